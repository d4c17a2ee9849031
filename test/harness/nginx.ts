// Starts a real nginx (Debian's) with a config the test provides, on loopback, as a
// foreground process stopped by PID. Used as a rate-limiting front (limit_req → 429)
// and as the load balancer in front of ferry replicas. Its access log is the record
// of what passed through it.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ferry.ts";

export interface NginxProcess {
  pid: number;
  dir: string;
  /** Access log lines as JSON: { method, uri, status, upstream, bytes }. */
  accessLog(): { method: string; uri: string; status: number; upstream: string; bytes: number }[];
  stop(): Promise<void>;
}

const running = new Set<number>();
process.on("exit", () => {
  for (const pid of running) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

/**
 * `httpBlock` goes inside `http { … }` (upstreams, limit zones, servers). Every
 * `listen` in it must be on 127.0.0.1. Waits until each of `ports` accepts.
 */
export async function startNginx(httpBlock: string, ports: number[]): Promise<NginxProcess> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-nginx-"));
  mkdirSync(join(dir, "logs"));
  const accessLogPath = join(dir, "logs", "access.log");
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "logs", "error.log")} info;
events { worker_connections 1024; }
http {
  log_format ferryjson escape=json '{"method":"$request_method","uri":"$request_uri","status":$status,"upstream":"$upstream_addr","bytes":$body_bytes_sent}';
  access_log ${accessLogPath} ferryjson;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  proxy_http_version 1.1;
  proxy_buffering off;
  proxy_request_buffering off;
  proxy_read_timeout 300s;
${httpBlock}
}`;
  if (/listen\s+(?!127\.0\.0\.1:)/.test(httpBlock)) throw new Error("nginx harness: every listen must be on 127.0.0.1");
  const confPath = join(dir, "nginx.conf");
  writeFileSync(confPath, conf);
  const proc = Bun.spawn(["nginx", "-c", confPath, "-p", dir], { stdout: "ignore", stderr: "pipe" });
  running.add(proc.pid);
  const nginx: NginxProcess = {
    pid: proc.pid,
    dir,
    accessLog: () => {
      let text = "";
      try {
        text = readFileSync(accessLogPath, "utf8");
      } catch {}
      return text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    },
    stop: async () => {
      running.delete(proc.pid);
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
      if (!exited) proc.kill("SIGKILL");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const port of ports) {
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      if (proc.exitCode !== null) {
        const err = await new Response(proc.stderr).text();
        let log = "";
        try {
          log = readFileSync(join(dir, "logs", "error.log"), "utf8");
        } catch {}
        throw new Error(`nginx exited: ${err}\n${log}`);
      }
      up = await fetch(`http://127.0.0.1:${port}/`).then(
        () => true,
        () => false,
      );
      if (!up) await Bun.sleep(50);
    }
    if (!up) {
      await nginx.stop();
      throw new Error(`nginx did not listen on ${port}`);
    }
  }
  return nginx;
}

/**
 * An nginx in front of a registry that answers manifest GETs with 429 + Retry-After
 * (and Docker Hub's TOOMANYREQUESTS body) past `ratePerMinute`, like Docker Hub's pull
 * limit. HEADs and blobs pass freely.
 */
export async function startRateLimitedFront(target: string, opts: { ratePerMinute: number; retryAfterSeconds: number }): Promise<NginxProcess & { url: string; port: number }> {
  const port = await freePort();
  const backend = new URL(target).host;
  const nginx = await startNginx(
    `
  limit_req_zone $limit_key zone=pulls:1m rate=${opts.ratePerMinute}r/m;
  map $request_method $limit_key { GET $binary_remote_addr; default ""; }
  server {
    listen 127.0.0.1:${port};
    location ~ ^/v2/.+/manifests/ {
      limit_req zone=pulls burst=1 nodelay;
      limit_req_status 429;
      error_page 429 = @ratelimited;
      proxy_pass http://${backend};
      proxy_set_header Host $http_host;
    }
    location / {
      proxy_pass http://${backend};
      proxy_set_header Host $http_host;
    }
    location @ratelimited {
      default_type application/json;
      add_header Retry-After ${opts.retryAfterSeconds} always;
      return 429 '{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}';
    }
  }`,
    [port],
  );
  return Object.assign(nginx, { url: `http://127.0.0.1:${port}`, port });
}
