// The servers under test, each a real process on loopback, stopped by PID:
//   ferry          dist/ferry (what users run) or `bun src/main.ts serve`
//   distribution   Debian's docker-registry 2.8 in proxy (pull-through cache) mode
//   nginx          Debian's nginx serving a cached file statically with sendfile, or as a
//                  store-and-forward proxy (scenario 3)
//   bun-relay      bench/lib/bun-relay.ts: Bun relaying, or relaying + hashing + storing (scenario 3)
//   c-relay        bench/lib/c-relay.c: the same relaying + hashing + storing in C (scenario 3)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startNginx, type NginxProcess } from "../../test/harness/nginx.ts";
import { freePort, killPid, spawnDaemon, tailFile, type Daemon } from "../../test/harness/proc.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const FERRY_BIN = join(ROOT, "dist/ferry");

export interface Peer {
  name: string;
  url: string;
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

/** Peak resident set (VmHWM) of a live process, in MiB; undefined when it is gone. */
export function peakRssMiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function currentRssMiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Poll `url` until it answers 200; bounded by attempts and time. */
export async function waitReady(url: string, alive: () => boolean, timeoutMs = 15_000, intervalMs = 2): Promise<number> {
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  for (let i = 0; performance.now() < deadline && i < timeoutMs / Math.max(intervalMs, 1) + 1000; i++) {
    if (!alive()) throw new Error(`process died before answering ${url}`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      async (r) => {
        await r.body?.cancel();
        return r.status === 200;
      },
      () => false,
    );
    if (ok) return performance.now() - t0;
    await Bun.sleep(intervalMs);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

export interface FerryOptions {
  upstreamUrl: string;
  /** Reuse a cache dir (warm); default a fresh one inside the peer's dir. */
  cacheDir?: string;
  tagTtl: string;
  binary: boolean;
  logLevel?: string;
  /** Egress HTTP proxy for the upstream (the bandwidth-limited link of scenario 4b). */
  proxy?: string;
  /** More keys of the docker.io [[registry]] (scenario 12: max_bandwidth). */
  registryExtra?: string;
  /** More tables after it (scenario 12: [limits] bandwidth). */
  tablesExtra?: string;
  /** [cache] max_size in bytes (the eviction scenario). */
  maxSize?: number;
  /** The shared blob tier (the S3 scenario). */
  s3?: { endpoint: string; bucket: string; accessKeyId: string; secretAccessKey: string; prefix: string };
}

export function ferryConfig(port: number, cacheDir: string, opts: FerryOptions): string {
  return [
    "[server]",
    `listen = "127.0.0.1:${port}"`,
    "[cache]",
    `dir = ${JSON.stringify(cacheDir)}`,
    `tag_ttl = "${opts.tagTtl}"`,
    ...(opts.maxSize !== undefined ? [`max_size = ${opts.maxSize}`] : []),
    ...(opts.s3
      ? ["[s3]", `endpoint = ${JSON.stringify(opts.s3.endpoint)}`, `bucket = ${JSON.stringify(opts.s3.bucket)}`, 'region = "us-east-1"', `access_key_id = ${JSON.stringify(opts.s3.accessKeyId)}`, `secret_access_key = ${JSON.stringify(opts.s3.secretAccessKey)}`, "force_path_style = true", `prefix = ${JSON.stringify(opts.s3.prefix)}`]
      : []),
    "[log]",
    `level = "${opts.logLevel ?? "info"}"`,
    "[[registry]]",
    'name = "docker.io"',
    `endpoints = [${JSON.stringify(opts.upstreamUrl)}]`,
    "allow_private_redirects = true",
    ...(opts.proxy ? [`proxy = ${JSON.stringify(opts.proxy)}`] : []),
    ...(opts.registryExtra ? [opts.registryExtra] : []),
    ...(opts.tablesExtra ? [opts.tablesExtra] : []),
    "",
  ].join("\n");
}

export function ferryCommand(binary: boolean): string[] {
  return binary ? [FERRY_BIN] : [BUN, join(ROOT, "src/main.ts")];
}

export async function startFerryPeer(opts: FerryOptions): Promise<Peer & { cacheDir: string; startupMs: number; logFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-ferry-"));
  const cacheDir = opts.cacheDir ?? join(dir, "data");
  const port = await freePort();
  const configPath = join(dir, "config.toml");
  writeFileSync(configPath, ferryConfig(port, cacheDir, opts));
  const logFile = join(dir, "ferry.log");
  const peer = await startDaemonPeer({ name: "ferry", dir, port, logFile, argv: [...ferryCommand(opts.binary), "serve", "--config", configPath], cwd: dir, pollMs: 5, stopMs: 10_000 });
  return { ...peer, cacheDir, logFile };
}

/**
 * A server process as a peer: started with `argv`, ready once `readyPath` answers 200
 * (the time that took is `startupMs`); stopping it removes `dir`. A failed start stops
 * the process and throws with the tail of its log.
 */
async function startDaemonPeer(o: { name: string; dir: string; port: number; logFile: string; argv: string[]; cwd?: string; readyPath?: string; pollMs: number; stopMs: number }): Promise<Peer & { startupMs: number }> {
  const daemon: Daemon = spawnDaemon(o.argv, { logFile: o.logFile, cwd: o.cwd });
  const url = `http://127.0.0.1:${o.port}`;
  let startupMs: number;
  try {
    startupMs = await waitReady(`${url}${o.readyPath ?? "/v2/"}`, () => daemon.alive(), 20_000, o.pollMs);
  } catch (e) {
    await daemon.stop(1000);
    throw new Error(`${o.name} did not start: ${(e as Error).message}\n${tailFile(o.logFile)}`);
  }
  return {
    name: o.name,
    url,
    pid: daemon.pid,
    dir: o.dir,
    startupMs,
    stop: async () => {
      await daemon.stop(o.stopMs);
      rmSync(o.dir, { recursive: true, force: true });
    },
  };
}

/**
 * distribution 2.8 as a pull-through cache of the upstream front. It needs no
 * credentials for library/* against the token-auth upstream: its proxy pings /v2/,
 * takes the Bearer challenge and fetches anonymous pull tokens (username/password
 * would only be needed for private repositories). Like ferry, it follows the front's
 * 307 to the CDN itself. It asks upstream on every tag request (proxy manifests by
 * tag are never served from its cache without a remote check).
 */
export async function startDistributionProxy(remoteUrl: string): Promise<Peer & { dataDir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-dist-"));
  const dataDir = join(dir, "data");
  mkdirSync(dataDir);
  const port = await freePort();
  const configPath = join(dir, "config.yml");
  writeFileSync(
    configPath,
    `version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(dataDir)}
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: ferry-bench-secret
proxy:
  remoteurl: ${JSON.stringify(remoteUrl)}
health:
  storagedriver:
    enabled: false
`,
  );
  const peer = await startDaemonPeer({ name: "distribution", dir, port, logFile: join(dir, "registry.log"), argv: ["docker-registry", "serve", configPath], pollMs: 20, stopMs: 5_000 });
  return { ...peer, dataDir };
}

/** nginx (one worker, like ferry's one event loop) serving files with sendfile on. */
export async function startNginxStatic(files: { path: string; file: string; contentType: string }[]): Promise<Peer> {
  const port = await freePort();
  for (const f of files) if (!existsSync(f.file)) throw new Error(`nginx: no such file ${f.file}`);
  const locations = files
    .map((f) => `    location = ${f.path} { alias ${f.file}; default_type ${f.contentType}; }`)
    .join("\n");
  return startNginxPeer(
    port,
    `
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
${locations}
  }`,
  );
}

/** nginx with `httpBlock` as a peer listening on `port`; `cleanup` runs after it stopped. */
async function startNginxPeer(port: number, httpBlock: string, cleanup?: () => void): Promise<Peer> {
  const nginx: NginxProcess = await startNginx(httpBlock, [port]);
  return {
    name: "nginx",
    url: `http://127.0.0.1:${port}`,
    pid: nginx.pid,
    dir: nginx.dir,
    stop: async () => {
      await nginx.stop();
      cleanup?.();
    },
  };
}

/**
 * nginx as the do-it-yourself mirror users build today: a reverse proxy to the upstream
 * that follows the blob 307 to the CDN itself and writes the blob to disk while it
 * forwards it (proxy_store). It checks no digest and caches no manifests, so on a cold
 * pull it does the least a store-and-forward mirror can: receive, write, send. That is
 * the floor scenario 3 compares ferry's cold pull with.
 */
export async function startNginxStoreForward(upstreamUrl: string): Promise<Peer> {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), "ferry-bench-nginx-store-"));
  return startNginxPeer(
    port,
    `
  server {
    listen 127.0.0.1:${port};
    root ${store};
    location /v2/ {
      proxy_pass ${upstreamUrl};
      proxy_intercept_errors on;
      error_page 307 = @cdn;
    }
    location @cdn {
      set $cdn $upstream_http_location;
      proxy_pass $cdn;
      proxy_set_header Authorization ""; # the CDN URL is signed; like S3, it refuses a second credential
      proxy_buffering on;
      proxy_buffers 16 64k;
      proxy_store on;
    }
  }`,
    () => rmSync(store, { recursive: true, force: true }),
  );
}

/**
 * bench/lib/bun-relay.ts: Bun relaying the upstream; "store" also hashes and stores blobs
 * through a JS stream, "native" does that work on the piped-to-file data path, "worker"
 * hashes and writes on a worker thread.
 */
export function startBunRelay(upstreamUrl: string, mode: "relay" | "store" | "native" | "worker" | "pipedhash" = "relay"): Promise<Peer> {
  const extra = mode === "relay" ? [] : mode === "store" ? ["DIR"] : ["DIR", mode];
  return startRelay(mode === "relay" ? "bun-relay" : `bun-relay-${mode}`, (port, dir) => [BUN, join(import.meta.dir, "bun-relay.ts"), String(port), upstreamUrl, ...extra.map((a) => (a === "DIR" ? dir : a))]);
}

/**
 * Compiles bench/lib/c-relay.c (cc and OpenSSL's headers, Debian's libssl-dev) into `dir`;
 * returns the executable, or the compiler's complaint when it can't be built here.
 */
export function buildCRelay(dir: string): { binary: string } | { error: string } {
  const binary = join(dir, "c-relay");
  const cc = Bun.spawnSync(["cc", "-O2", "-pthread", "-o", binary, join(import.meta.dir, "c-relay.c"), "-lcrypto"], { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  return cc.exitCode === 0 ? { binary } : { error: cc.stderr.toString().trim().split("\n").slice(-3).join(" ") || `cc exited with ${cc.exitCode}` };
}

/** The C relay built by buildCRelay, hashing and storing blobs in its own temp dir. */
export function startCRelay(binary: string, upstreamUrl: string): Promise<Peer> {
  return startRelay("c-relay-store", (port, dir) => [binary, String(port), upstreamUrl, dir]);
}

/** A bare relay (bun-relay.ts, c-relay.c) in its own temp dir, ready once /_relay/ready answers. */
async function startRelay(name: string, argv: (port: number, dir: string) => string[]): Promise<Peer> {
  const dir = mkdtempSync(join(tmpdir(), `ferry-bench-${name}-`));
  const port = await freePort();
  return startDaemonPeer({ name, dir, port, logFile: join(dir, "relay.log"), argv: argv(port, dir), readyPath: "/_relay/ready", pollMs: 5, stopMs: 5_000 });
}

/** Find a cached blob file by its hex digest under a directory (bounded walk). */
export function findFile(root: string, name: string, maxEntries = 100_000): string | undefined {
  const { readdirSync } = require("node:fs") as typeof import("node:fs");
  const stack = [root];
  let seen = 0;
  while (stack.length && seen < maxEntries) {
    const dir = stack.pop()!;
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      seen++;
      const p = join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.name === name || (e.name === "data" && dir.endsWith(name))) return p;
    }
  }
  return undefined;
}

export { killPid };
