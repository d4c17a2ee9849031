// Generic process / port helpers for the test harness.
//
// Everything here is meant to be reused by other harness modules (upstream.ts,
// clients.ts, ferry launchers): spawn a daemon with its output in a log file,
// wait for a TCP port or an arbitrary condition with a bounded loop, find a free
// loopback port, and make sure daemons die with the test process.

import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { connect } from "node:net";

export const LOOPBACK = "127.0.0.1";

/** Ask the kernel for a free TCP port on loopback (bind :0, read it, close). */
export async function freePort(host: string = LOOPBACK): Promise<number> {
  const listener = Bun.listen({
    hostname: host,
    port: 0,
    socket: { data() {} },
  });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** True when something accepts a TCP connection on host:port. */
export function portOpen(port: number, host: string = LOOPBACK, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

export interface WaitOptions {
  /** Give up after this many milliseconds (default 10 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /** Text for the timeout error. */
  what?: string;
  /** Extra context appended to the timeout error (e.g. a log tail). */
  onTimeout?: () => string;
}

/**
 * Poll `check` until it returns a truthy value (which is returned) or throws
 * once the time budget is spent. Every iteration is bounded in time, and the
 * number of iterations is bounded by timeoutMs / intervalMs.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  opts: WaitOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  const maxTries = Math.ceil(timeoutMs / Math.max(1, intervalMs)) + 1;
  let lastErr: unknown;
  for (let i = 0; i < maxTries && Date.now() <= deadline; i++) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      lastErr = e;
    }
    await Bun.sleep(intervalMs);
  }
  const extra = opts.onTimeout ? `\n${opts.onTimeout()}` : "";
  const cause = lastErr ? ` (last error: ${String(lastErr)})` : "";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? "condition"}${cause}${extra}`);
}

/** Wait until host:port accepts TCP connections. */
export async function waitForPort(port: number, opts: WaitOptions & { host?: string } = {}): Promise<void> {
  const host = opts.host ?? LOOPBACK;
  await waitFor(() => portOpen(port, host, 500), { what: `${host}:${port} to accept connections`, ...opts });
}

/** True if a process with this PID exists (and is not a zombie we already reaped). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); treat it as dead.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return existsSync(`/proc/${pid}`);
  }
}

// ---------------------------------------------------------------------------
// Cleanup on exit: a crashed or interrupted test must not leave daemons behind.

const exitHooks = new Set<() => void>();
let exitHooksInstalled = false;

function runExitHooks(): void {
  for (const fn of [...exitHooks]) {
    try {
      fn();
    } catch {
      // best effort: we are exiting anyway
    }
  }
  exitHooks.clear();
}

/**
 * Register a synchronous function to run when the process exits (normally, or
 * on SIGINT/SIGTERM/SIGHUP). Returns an unregister function.
 */
export function onExit(fn: () => void): () => void {
  if (!exitHooksInstalled) {
    exitHooksInstalled = true;
    process.on("exit", runExitHooks);
    const signals = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
    for (const [sig, num] of Object.entries(signals)) {
      process.once(sig, () => {
        runExitHooks();
        process.exit(128 + num);
      });
    }
  }
  exitHooks.add(fn);
  return () => exitHooks.delete(fn);
}

/** Kill a PID with a signal, ignoring "no such process". */
export function killPid(pid: number, signal: NodeJS.Signals = "SIGTERM"): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

// ---------------------------------------------------------------------------
// Daemons

export interface SpawnDaemonOptions {
  /** File receiving stdout and stderr (appended). */
  logFile: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * Ask the kernel to SIGKILL the daemon if this process dies without running
   * its exit hooks (e.g. SIGKILL of the test runner). Uses `setpriv --pdeathsig`
   * when available. Default true.
   */
  dieWithParent?: boolean;
}

export interface Daemon {
  readonly pid: number;
  readonly cmd: string[];
  readonly logFile: string;
  /** Resolves with the exit code (or signal-derived code) when the process ends. */
  readonly exited: Promise<number>;
  alive(): boolean;
  /** SIGTERM, wait up to graceMs (default 3 s), then SIGKILL; waits for exit. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL, as a crash would; waits (bounded) until the process is gone. */
  kill(): Promise<void>;
  /** Last `bytes` of the log file, for error messages. */
  logTail(bytes?: number): string;
}

let setprivChecked: boolean | undefined;
function haveSetpriv(): boolean {
  if (setprivChecked === undefined) {
    setprivChecked = Bun.which("setpriv") !== null;
  }
  return setprivChecked;
}

/** Read the end of a log file (best effort). */
export function tailFile(path: string, bytes = 4000): string {
  try {
    const text = readFileSync(path, "utf8");
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch {
    return "(no log)";
  }
}

/**
 * Start a long-running process with stdout+stderr appended to `logFile`.
 * The process is killed by PID when the test process exits.
 */
export function spawnDaemon(cmd: string[], opts: SpawnDaemonOptions): Daemon {
  const fd = openSync(opts.logFile, "a");
  const argv =
    opts.dieWithParent !== false && haveSetpriv() ? ["setpriv", "--pdeathsig", "KILL", "--", ...cmd] : cmd;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...(opts.env ?? {}) })) {
    if (v !== undefined) env[k] = v;
  }
  const child = Bun.spawn(argv, {
    cwd: opts.cwd,
    env,
    stdin: "ignore",
    stdout: fd,
    stderr: fd,
  });
  closeSync(fd);
  const pid = child.pid;
  const unregister = onExit(() => killPid(pid, "SIGKILL"));
  const exited = child.exited.then((code) => {
    unregister();
    return code;
  });
  let finished = false;
  void exited.then(() => {
    finished = true;
  });

  return {
    pid,
    cmd,
    logFile: opts.logFile,
    exited,
    alive: () => !finished && pidAlive(pid),
    async stop(graceMs = 3000) {
      if (finished) return;
      killPid(pid, "SIGTERM");
      const timedOut = await Promise.race([exited.then(() => false), Bun.sleep(graceMs).then(() => true)]);
      if (timedOut) {
        killPid(pid, "SIGKILL");
        await Promise.race([exited, Bun.sleep(5000)]);
      }
    },
    async kill() {
      if (finished || !pidAlive(pid)) return;
      killPid(pid, "SIGKILL");
      await Promise.race([exited, Bun.sleep(5000)]);
    },
    logTail: (bytes?: number) => tailFile(opts.logFile, bytes),
  };
}

/** Run a command to completion, capturing output; throws on non-zero exit unless allowFail. */
export async function run(
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const timer = setTimeout(() => killPid(child.pid, "SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  if (code !== 0 && !opts.allowFail) {
    throw new Error(`command failed (${code}): ${cmd.join(" ")}\n${stderr.slice(-4000)}${stdout.slice(-2000)}`);
  }
  return { code, stdout, stderr };
}
