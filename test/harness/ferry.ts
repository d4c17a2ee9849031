// Starts ferry as a real process (`bun src/main.ts serve`) on a free loopback port,
// with a config written to a temp dir; stops it by PID.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");

export interface FerryProcess {
  url: string; // http://127.0.0.1:PORT
  host: string; // 127.0.0.1:PORT
  port: number;
  dir: string; // temp dir holding config and cache
  cacheDir: string;
  pid: number;
  /** Everything ferry logged so far (JSON lines). */
  logs(): string;
  /** Waits (bounded) until the log contains `text`; access lines are written after the response. */
  waitForLog(text: string, timeoutMs?: number): Promise<boolean>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface FerryOptions {
  /** TOML appended after [server] and [cache] (e.g. [[registry]] entries). */
  config?: string;
  cacheDir?: string;
  tagTtl?: string;
  env?: Record<string, string>;
  port?: number;
  /** Extra [server] lines, e.g. `idle_timeout = "2s"`. */
  server?: string;
}

const running = new Set<FerryProcess>();
process.on("exit", () => {
  for (const f of running) {
    try {
      process.kill(f.pid, "SIGKILL");
    } catch {}
  }
});

export async function startFerry(opts: FerryOptions = {}): Promise<FerryProcess> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-test-"));
  const cacheDir = opts.cacheDir ?? join(dir, "data");
  const port = opts.port ?? (await freePort());
  const configPath = join(dir, "config.toml");
  writeFileSync(
    configPath,
    `[server]\nlisten = "127.0.0.1:${port}"\n${opts.server ?? ""}\n[cache]\ndir = "${cacheDir}"\ntag_ttl = "${opts.tagTtl ?? "5m"}"\n[log]\nlevel = "debug"\n${opts.config ?? ""}\n`,
  );
  const logPath = join(dir, "ferry.log");
  const proc = Bun.spawn([BUN, join(ROOT, "src/main.ts"), "serve", "--config", configPath], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdout: Bun.file(logPath),
    stderr: Bun.file(logPath),
  });
  const url = `http://127.0.0.1:${port}`;
  const ferry: FerryProcess = {
    url,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    cacheDir,
    pid: proc.pid,
    logs: () => {
      try {
        return require("node:fs").readFileSync(logPath, "utf8") as string;
      } catch {
        return "";
      }
    },
    waitForLog: async (text, timeoutMs = 2_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (ferry.logs().includes(text)) return true;
        await Bun.sleep(25);
      }
      return ferry.logs().includes(text);
    },
    stop: async (signal = "SIGTERM") => {
      running.delete(ferry);
      proc.kill(signal);
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!exited) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
      rmSync(dir, { recursive: true, force: true }); // a caller-owned cacheDir lives elsewhere and survives
    },
  };
  running.add(ferry);
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`ferry exited at start:\n${ferry.logs()}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.status === 200) return ferry;
    } catch {}
    await Bun.sleep(50);
  }
  await ferry.stop("SIGKILL");
  throw new Error(`ferry did not answer within 5 s:\n${ferry.logs()}`);
}
