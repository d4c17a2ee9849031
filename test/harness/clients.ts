/**
 * Real registry clients (docker/dockerd, containerd/ctr, podman, skopeo) that pull
 * THROUGH A MIRROR on loopback and can never reach the internet.
 *
 * How containment works (read this before changing anything):
 *
 *  - Every client AND every daemon runs in a private mount namespace:
 *      unshare -m --propagation private -- sh -c '<mount ops>; exec "$@"' ...
 *    (unshare(1) without --fork exec()s, and sh exec()s, so the PID Bun.spawn returns IS
 *    the PID of dockerd/containerd/ctr/podman: we start and stop everything by that PID.)
 *    Inside the namespace:
 *      /etc/hosts        -> a file mapping every well-known public registry / CDN / auth
 *                           host name (BLACKHOLE_HOSTNAMES) to 127.0.0.1, so a fallback to
 *                           "the real registry" dials 127.0.0.1:443 and gets ECONNREFUSED;
 *      /etc/resolv.conf  -> "nameserver 127.0.0.1" (nothing listens on :53), so any
 *                           other name fails to resolve instead of being looked up.
 *    Private propagation means none of these mounts (nor containerd's snapshot mounts)
 *    are visible on the host, and they vanish with the process.
 *  - Where a client config has a "real registry" location (containerd hosts.toml `server`,
 *    podman registries.conf `location`), we point it at a CLOSED privileged loopback port
 *    (see closedPort()), so the fallback is refused even before name resolution matters.
 *  - Proxy variables (HTTP(S)_PROXY...) and DOCKER_HOST/CONTAINERD_ADDRESS-style variables
 *    are stripped from every child environment; HOME/XDG/DOCKER_CONFIG/REGISTRY_AUTH_FILE
 *    point into the temp dir, so no host credentials or user configs are ever read.
 *
 * Host side effects we deliberately prevent (found the hard way on this machine):
 *  - dockerd 20.10 writes /etc/docker/key.json  -> a private dir is bind-mounted over
 *    /etc/docker in dockerd's namespace (it also holds certs.d for optional registry CAs).
 *  - podman/skopeo (rootful) write /var/lib/containers/cache/blob-info-cache-v1.boltdb and
 *    /dev/shm/libpod_lock -> a private dir is bound over /var/lib/containers (created empty
 *    on the host if missing: a bind needs an existing mount point) and a tmpfs over /dev/shm.
 *  - /etc/containers (registries.conf.d/shortnames.conf, policy.json, storage.conf) is
 *    replaced by a generated dir; the CONTAINERS_* env vars point at the same files.
 *
 * All temp dirs live under /tmp/fcl-XXXXXX (short: unix socket paths max ~108 bytes).
 * Every wait loop is bounded in count and time; a process.on('exit') safety net SIGKILLs
 * whatever is still running (by PID) and removes temp dirs.
 */
import type { Subprocess } from "bun";
import * as fs from "node:fs";
import * as path from "node:path";

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
}

export interface PullResult extends RunResult {
  /** manifest digest the client reports it pulled (only when code === 0) */
  digest?: string;
}

export interface IsolationOptions {
  /** extra name -> ip entries for the private /etc/hosts (ip must be loopback) */
  extraHosts?: Record<string, string>;
}

export interface RunOptions extends IsolationOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  stdin?: string;
  /** extra bind mounts [source, target] inside the namespace (target must exist) */
  binds?: Array<[string, string]>;
  /** paths to cover with a fresh tmpfs inside the namespace */
  tmpfs?: string[];
}

export interface ClientsAvailability {
  docker: boolean;
  ctr: boolean;
  podman: boolean;
  skopeo: boolean;
  reason?: string;
}

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/**
 * Host names of public registries, their auth endpoints and blob CDNs. All map to 127.0.0.1
 * inside client namespaces. Docker Hub's blob CDN also uses per-account R2 host names; the
 * known one is listed, others fail DNS (resolv.conf -> 127.0.0.1) anyway.
 */
export const BLACKHOLE_HOSTNAMES: readonly string[] = [
  // Docker Hub
  "docker.io",
  "registry-1.docker.io",
  "registry.docker.io",
  "index.docker.io",
  "auth.docker.io",
  "hub.docker.com",
  "login.docker.com",
  "production.cloudflare.docker.com",
  "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
  "download.docker.com",
  "notary.docker.io",
  // GitHub
  "ghcr.io",
  "pkg-containers.githubusercontent.com",
  "objects.githubusercontent.com",
  "github.com",
  "api.github.com",
  // Quay
  "quay.io",
  "cdn.quay.io",
  "cdn01.quay.io",
  "cdn02.quay.io",
  "cdn03.quay.io",
  "quayio-production-s3.s3.amazonaws.com",
  // Google / Kubernetes
  "gcr.io",
  "k8s.gcr.io",
  "us.gcr.io",
  "eu.gcr.io",
  "asia.gcr.io",
  "registry.k8s.io",
  "us-docker.pkg.dev",
  "europe-docker.pkg.dev",
  "asia-docker.pkg.dev",
  "storage.googleapis.com",
  "prod-registry-k8s-io-us-east-1.s3.dualstack.us-east-1.amazonaws.com",
  // Others commonly mirrored
  "mcr.microsoft.com",
  "public.ecr.aws",
  "registry.gitlab.com",
  "nvcr.io",
  "docker.elastic.co",
  "registry.access.redhat.com",
  "registry.redhat.io",
  "registry.fedoraproject.org",
  "lscr.io",
  "cgr.dev",
  "container-registry.oracle.com",
];

const TMP_BASE = "/tmp"; // not os.tmpdir(): keep socket paths short
const SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_CLIENT_TIMEOUT_MS = 90_000;
const SHA256_RE = /sha256:[0-9a-f]{64}/;

/** Env vars that could redirect a client somewhere else (proxies, other daemons, configs). */
const STRIP_ENV = /^(https?_proxy|all_proxy|no_proxy|ftp_proxy|docker_.*|containerd_.*|containers_.*|registry_auth_file|storage_driver|storage_opts|buildah_.*|podman_.*|xdg_.*|ssl_cert_.*)$/i;

// ---------------------------------------------------------------------------------------
// Resource tracking + exit safety net
// ---------------------------------------------------------------------------------------

const liveProcs = new Set<Subprocess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => cleanupAllSync());
}

/** Synchronous last-resort cleanup: SIGKILL by PID, bounded wait, unmount, rm temp dirs. */
export function cleanupAllSync(): void {
  for (const p of liveProcs) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  const deadline = Date.now() + 3000;
  for (const p of liveProcs) {
    while (Date.now() < deadline && pidAlive(p.pid)) Bun.sleepSync(20);
  }
  liveProcs.clear();
  for (const d of liveDirs) {
    killStragglers(d, true);
    removeDirSync(d);
  }
  liveDirs.clear();
}

/** Async cleanup of everything this module started (for afterAll hooks). */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...liveProcs].map((p) => terminate(p, 5000)));
  for (const d of [...liveDirs]) {
    killStragglers(d, true);
    removeDirSync(d);
    liveDirs.delete(d);
  }
}

function pidAlive(pid: number): boolean {
  // A zombie already released its namespaces/mounts: count it as dead.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM, wait up to graceMs, then SIGKILL and wait (bounded) for the exit. */
async function terminate(p: Subprocess, graceMs: number): Promise<void> {
  try {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid, "SIGTERM");
      } catch {
        /* gone */
      }
      const exited = await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!exited) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          /* gone */
        }
        await Promise.race([p.exited, sleep(5000)]);
      }
    }
  } finally {
    liveProcs.delete(p);
  }
}

/**
 * Kill (by PID) any process whose command line mentions `dir` (e.g. containerd shims that
 * outlived containerd). Only ever matches processes that reference our own temp dir.
 */
function killStragglers(dir: string, hard: boolean): number[] {
  const killed: number[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return killed;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    let cmd = "";
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (!cmd.includes(dir + "/") && !cmd.split("\0").includes(dir)) continue;
    try {
      process.kill(pid, hard ? "SIGKILL" : "SIGTERM");
      killed.push(pid);
    } catch {
      /* gone */
    }
  }
  return killed;
}

/** Lazily unmount anything (in the host namespace) mounted below dir, deepest first. */
function unmountUnder(dir: string): void {
  let info = "";
  try {
    info = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return;
  }
  const points = info
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => !!m)
    .map((m) => m.replace(/\\(\d{3})/g, (_s, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
  for (const m of points) Bun.spawnSync(["umount", "-l", m], { stdout: "ignore", stderr: "ignore" });
}

function removeDirSync(dir: string): void {
  if (!dir.startsWith(TMP_BASE + "/fcl-")) return; // never rm anything we did not create
  unmountUnder(dir);
  for (let i = 0; i < 3; i++) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      return;
    } catch {
      Bun.sleepSync(100);
    }
  }
}

function makeTempDir(tag: string): string {
  installExitHook();
  const d = fs.mkdtempSync(path.join(TMP_BASE, `fcl-${tag}-`));
  liveDirs.add(d);
  return d;
}

async function releaseDir(dir: string): Promise<void> {
  killStragglers(dir, true);
  removeDirSync(dir);
  liveDirs.delete(dir);
}

// ---------------------------------------------------------------------------------------
// Namespace sandbox
// ---------------------------------------------------------------------------------------

/**
 * Runs inside `unshare -m --propagation private`: $1=hosts file, $2=resolv.conf, then
 * "bind SRC DST" / "tmpfs DST" ops up to "--", then the command (exec'd: same PID).
 */
const NS_SCRIPT = [
  "set -e",
  'mount --bind "$1" /etc/hosts',
  'mount --bind "$2" /etc/resolv.conf',
  "shift 2",
  'while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do',
  '  case "$1" in',
  '    bind) mount --bind "$2" "$3"; shift 3;;',
  '    tmpfs) mount -t tmpfs -o mode=1777,size=64m tmpfs "$2"; shift 2;;',
  '    *) echo "ferry-ns: bad op $1" >&2; exit 97;;',
  "  esac",
  "done",
  "shift",
  'exec "$@"',
].join("\n");

function hostsFileText(extra?: Record<string, string>): string {
  let hostname = "localhost";
  try {
    hostname = fs.readFileSync("/etc/hostname", "utf8").trim() || "localhost";
  } catch {
    /* keep */
  }
  const lines = [
    "# ferry test harness: every public registry name is loopback (connection refused)",
    "127.0.0.1 localhost",
    "::1 localhost ip6-localhost ip6-loopback",
    `127.0.0.1 ${hostname}`,
    ...BLACKHOLE_HOSTNAMES.map((h) => `127.0.0.1 ${h}`),
  ];
  for (const [name, ip] of Object.entries(extra ?? {})) {
    if (!/^(127\.\d+\.\d+\.\d+|::1)$/.test(ip)) throw new Error(`extraHosts: ${name} -> ${ip} is not loopback`);
    lines.push(`${ip} ${name}`);
  }
  return lines.join("\n") + "\n";
}

/** Writes hosts + resolv.conf into dir and returns their paths. */
function writeSandboxFiles(dir: string, iso?: IsolationOptions): { hosts: string; resolv: string } {
  const hosts = path.join(dir, "ns-hosts");
  const resolv = path.join(dir, "ns-resolv.conf");
  fs.writeFileSync(hosts, hostsFileText(iso?.extraHosts));
  fs.writeFileSync(resolv, "# ferry test harness: no DNS server here on purpose\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
  return { hosts, resolv };
}

/** Clean environment for a child: no proxies, no host client configs. */
function childEnv(home: string, extra?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || STRIP_ENV.test(k)) continue;
    env[k] = v;
  }
  env.PATH = SYS_PATH;
  env.HOME = home;
  env.XDG_RUNTIME_DIR = path.join(home, "xdg-run");
  env.XDG_CONFIG_HOME = path.join(home, "xdg-config");
  env.DOCKER_CONFIG = path.join(home, "docker-cli");
  env.NO_PROXY = "*";
  env.no_proxy = "*";
  for (const d of [env.XDG_RUNTIME_DIR, env.XDG_CONFIG_HOME, env.DOCKER_CONFIG]) fs.mkdirSync(d, { recursive: true });
  return { ...env, ...(extra ?? {}) };
}

function isolatedArgv(
  argv: string[],
  files: { hosts: string; resolv: string },
  binds: Array<[string, string]> = [],
  tmpfs: string[] = [],
): string[] {
  const ops: string[] = [];
  for (const [src, dst] of binds) ops.push("bind", src, dst);
  for (const dst of tmpfs) ops.push("tmpfs", dst);
  return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", NS_SCRIPT, "ferry-ns", files.hosts, files.resolv, ...ops, "--", ...argv];
}

/** Incrementally collects a stream so partial output survives a timeout. */
function collect(stream: ReadableStream<Uint8Array>): { done: Promise<void>; text: () => string; cancel: () => void } {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  const done = (async () => {
    try {
      for (;;) {
        const { done: d, value } = await reader.read();
        if (d) break;
        if (value) chunks.push(value);
      }
    } catch {
      /* cancelled */
    }
  })();
  return {
    done,
    text: () => Buffer.concat(chunks).toString("utf8"),
    cancel: () => {
      reader.cancel().catch(() => {});
    },
  };
}

/** Spawn argv (already wrapped or not), capture output, enforce a timeout (TERM, then KILL). */
async function runRaw(argv: string[], env: Record<string, string>, timeoutMs: number, stdin?: string): Promise<RunResult> {
  installExitHook();
  const start = performance.now();
  const proc = Bun.spawn(argv, { env, stdin: stdin === undefined ? "ignore" : "pipe", stdout: "pipe", stderr: "pipe" });
  liveProcs.add(proc);
  if (stdin !== undefined && proc.stdin) {
    const sink = proc.stdin as unknown as { write(s: string): unknown; end(): unknown };
    sink.write(stdin);
    sink.end();
  }
  const out = collect(proc.stdout as ReadableStream<Uint8Array>);
  const err = collect(proc.stderr as ReadableStream<Uint8Array>);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void terminate(proc, 3000);
  }, timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  liveProcs.delete(proc);
  // A grandchild could hold the pipes open: give readers a bounded grace, then cancel.
  await Promise.race([Promise.all([out.done, err.done]), sleep(3000)]);
  out.cancel();
  err.cancel();
  return { code: timedOut && code === 0 ? 124 : code, stdout: out.text(), stderr: err.text(), durationMs: Math.round(performance.now() - start), timedOut };
}

/**
 * Run any command in a fresh contained namespace (private /etc/hosts + resolv.conf).
 * Useful for ad-hoc clients (curl, crane...) in tests.
 */
export async function runIsolated(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const dir = makeTempDir("run");
  try {
    const files = writeSandboxFiles(dir, opts);
    const env = childEnv(path.join(dir, "home"), opts.env);
    return await runRaw(isolatedArgv(argv, files, opts.binds, opts.tmpfs), env, opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS, opts.stdin);
  } finally {
    await releaseDir(dir);
  }
}

/** Start a long-running daemon in a contained namespace; output goes to logFile. */
function spawnDaemon(
  argv: string[],
  files: { hosts: string; resolv: string },
  env: Record<string, string>,
  logFile: string,
  binds: Array<[string, string]> = [],
  tmpfs: string[] = [],
): Subprocess {
  installExitHook();
  const fd = fs.openSync(logFile, "a");
  try {
    const proc = Bun.spawn(isolatedArgv(argv, files, binds, tmpfs), { env, stdin: "ignore", stdout: fd, stderr: fd });
    liveProcs.add(proc);
    return proc;
  } finally {
    fs.closeSync(fd);
  }
}

function tail(file: string, n = 30): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-n).join("\n");
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------------------
// Closed port + availability
// ---------------------------------------------------------------------------------------

let closedPortCache: number | undefined;

/**
 * A loopback TCP port nobody listens on (connect -> ECONNREFUSED), used as the "real
 * registry" location. Privileged low ports are used on purpose: an ephemeral port freed by
 * us could be handed to some later listen(0) of another test, a port < 1024 will not be.
 */
export async function closedPort(): Promise<number> {
  if (closedPortCache !== undefined) return closedPortCache;
  for (const port of [1, 3, 4, 6, 8, 10, 12, 14, 16]) {
    const refused = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 2000);
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s) {
            clearTimeout(t);
            s.end();
            resolve(false);
          },
          data() {},
          connectError() {
            clearTimeout(t);
            resolve(true);
          },
        },
      }).catch(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
    if (refused) {
      closedPortCache = port;
      return port;
    }
  }
  throw new Error("closedPort: every candidate low loopback port is open?!");
}

function which(bin: string): string | null {
  return Bun.which(bin, { PATH: SYS_PATH });
}

/** Docker CLI: prefer Debian's /usr/bin/docker (same version as dockerd 20.10, no API downgrade). */
function dockerCli(): string {
  const override = process.env.FERRY_DOCKER_CLI;
  if (override && fs.existsSync(override)) return override;
  if (fs.existsSync("/usr/bin/docker")) return "/usr/bin/docker";
  return which("docker") ?? "docker";
}

/** Diagnostics only: tests must not skip silently on this. */
export function clientsAvailable(): ClientsAvailability {
  const missing: string[] = [];
  const has = (b: string) => {
    const ok = which(b) !== null;
    if (!ok) missing.push(b);
    return ok;
  };
  const root = process.getuid?.() === 0;
  const base = has("unshare") && has("mount") && root;
  const containerd = has("containerd") && has("ctr");
  const docker = base && has("dockerd") && fs.existsSync(dockerCli()) && containerd;
  const ctr = base && containerd;
  const podman = base && has("podman");
  const skopeo = base && has("skopeo");
  const reasons: string[] = [];
  if (!root) reasons.push("not root (mount namespaces + rootful daemons need root)");
  if (missing.length) reasons.push(`missing: ${[...new Set(missing)].join(", ")}`);
  return { docker, ctr, podman, skopeo, ...(reasons.length ? { reason: reasons.join("; ") } : {}) };
}

// ---------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------

export interface ContainerdOptions extends IsolationOptions {
  /** containerd log level (default "info"); "debug" logs every registry request it makes */
  logLevel?: "debug" | "info" | "warn" | "error";
  startTimeoutMs?: number;
}

export interface ContainerdHandle {
  pid: number;
  dir: string;
  /** grpc socket path (ctr --address / dockerd --containerd) */
  address: string;
  logFile: string;
  /** run `ctr --address <sock> ...args` contained (own namespace, hosts, resolv) */
  ctr(args: string[], opts?: { timeoutMs?: number; env?: Record<string, string> }): Promise<RunResult>;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Start a private containerd: own root/state/sockets/opt dir, CRI plugin disabled (no
 * kubelet here; it would also try CNI), aufs/btrfs/zfs/devmapper disabled (only noise).
 */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdHandle> {
  const dir = makeTempDir("ctd");
  const address = path.join(dir, "containerd.sock");
  const logFile = path.join(dir, "containerd.log");
  const files = writeSandboxFiles(dir, opts);
  const home = path.join(dir, "home");
  const env = childEnv(home);
  const config = [
    "version = 2",
    `root = ${JSON.stringify(path.join(dir, "root"))}`,
    `state = ${JSON.stringify(path.join(dir, "state"))}`,
    "oom_score = 0",
    `disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]`,
    "[grpc]",
    `  address = ${JSON.stringify(address)}`,
    "[ttrpc]",
    `  address = ${JSON.stringify(address + ".ttrpc")}`,
    "[debug]",
    '  address = ""',
    `  level = ${JSON.stringify(opts.logLevel ?? "info")}`,
    "[metrics]",
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(path.join(dir, "opt"))}`,
    "",
  ].join("\n");
  const cfgFile = path.join(dir, "config.toml");
  fs.writeFileSync(cfgFile, config);
  const proc = spawnDaemon(["containerd", "--config", cfgFile], files, env, logFile);

  const ctr = (args: string[], o: { timeoutMs?: number; env?: Record<string, string> } = {}) =>
    runRaw(isolatedArgv(["ctr", "--address", address, ...args], files), { ...env, ...(o.env ?? {}) }, o.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS);

  let stopped = false;
  const handle: ContainerdHandle = {
    pid: proc.pid,
    dir,
    address,
    logFile,
    ctr,
    logs: () => tail(logFile, 10_000),
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate(proc, 10_000);
      killStragglers(dir, true); // shims, if anyone ran a task
      await releaseDir(dir);
    },
  };

  // Ready = socket exists and `ctr version` answers. Bounded: 200 tries / startTimeoutMs.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
  for (let i = 0; i < 200 && Date.now() < deadline; i++) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    if (fs.existsSync(address)) {
      const v = await ctr(["version"], { timeoutMs: 5000 });
      if (v.code === 0) return handle;
    }
    await sleep(100);
  }
  const why = `containerd did not become ready (exit=${proc.exitCode} sig=${proc.signalCode}); log tail:\n${tail(logFile)}`;
  await handle.stop();
  throw new Error(why);
}

// ---------------------------------------------------------------------------------------
// dockerd
// ---------------------------------------------------------------------------------------

export interface DockerdOptions extends IsolationOptions {
  /** registry-mirrors, e.g. ["http://127.0.0.1:5000"] */
  mirrors: string[];
  /** defaults to host:port of every http:// mirror */
  insecureRegistries?: string[];
  /** reuse an existing containerd (not stopped by stop()); default: a private one */
  containerd?: ContainerdHandle;
  /** extra daemon.json keys (merged last, e.g. {"debug": true, "max-concurrent-downloads": 1}) */
  daemonJson?: Record<string, unknown>;
  /** registry host ("127.0.0.1:5443") -> CA PEM, written to <private /etc/docker>/certs.d */
  registryCAs?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface DockerImageInspect {
  Id: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Architecture?: string;
  Os?: string;
  Size?: number;
  [k: string]: unknown;
}

export interface DockerdHandle {
  pid: number;
  dir: string;
  socket: string;
  dataRoot: string;
  logFile: string;
  /** the DOCKER_CONFIG dir the CLI uses (config.json with auths lives here) */
  cliConfigDir: string;
  containerd: ContainerdHandle;
  docker(args: string[], opts?: { timeoutMs?: number; stdin?: string }): Promise<RunResult>;
  pull(ref: string, opts?: { platform?: string; timeoutMs?: number }): Promise<PullResult>;
  imageInspect(ref: string): Promise<DockerImageInspect | null>;
  /** real `docker login` (goes through dockerd's network stack: contained as well) */
  login(host: string, user: string, pass: string): Promise<RunResult>;
  /** write credentials into the CLI config without contacting anything (docker.io -> index key) */
  writeAuth(host: string, user: string, pass: string): void;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Start dockerd 20.10 with a private containerd. What makes it start on this machine:
 *  - cgroups: the VM has a cgroup v1 hybrid layout (tmpfs /sys/fs/cgroup + v1 controllers +
 *    cgroup2 at /unified) and no systemd -> force the cgroupfs driver; only "blkio weight"
 *    warnings remain. Nothing else needed (we never run containers).
 *  - networking: "bridge": "none" + iptables/ip6tables false -> no docker0, no netfilter,
 *    no iptables binary needed.
 *  - storage: vfs (works on any backing fs, incl. overlay-on-overlay in CI containers).
 *  - external containerd via --containerd (otherwise dockerd spawns its own under exec-root).
 *  - /etc/docker is replaced by a private dir (dockerd writes key.json there).
 */
export async function startDockerd(opts: DockerdOptions): Promise<DockerdHandle> {
  const ownContainerd = !opts.containerd;
  const containerd = opts.containerd ?? (await startContainerd({ extraHosts: opts.extraHosts }));
  let dir: string;
  try {
    dir = makeTempDir("dkd");
  } catch (e) {
    if (ownContainerd) await containerd.stop();
    throw e;
  }
  const socket = path.join(dir, "docker.sock");
  const dataRoot = path.join(dir, "data");
  const logFile = path.join(dir, "dockerd.log");
  const etcDocker = path.join(dir, "etc-docker");
  const files = writeSandboxFiles(dir, opts);
  const home = path.join(dir, "home");
  const env = childEnv(home);
  const cliConfigDir = env.DOCKER_CONFIG as string;
  fs.mkdirSync(path.join(etcDocker, "certs.d"), { recursive: true });
  for (const [host, pem] of Object.entries(opts.registryCAs ?? {})) {
    fs.mkdirSync(path.join(etcDocker, "certs.d", host), { recursive: true });
    fs.writeFileSync(path.join(etcDocker, "certs.d", host, "ca.crt"), pem);
  }
  const insecure =
    opts.insecureRegistries ??
    opts.mirrors.filter((m) => m.startsWith("http://")).map((m) => new URL(m).host);
  const daemonJson = {
    "registry-mirrors": opts.mirrors,
    "insecure-registries": insecure,
    "storage-driver": "vfs",
    iptables: false,
    ip6tables: false,
    bridge: "none",
    "exec-opts": ["native.cgroupdriver=cgroupfs"],
    "data-root": dataRoot,
    "exec-root": path.join(dir, "exec"),
    pidfile: path.join(dir, "docker.pid"),
    hosts: [`unix://${socket}`],
    ...(opts.daemonJson ?? {}),
  };
  const cfgFile = path.join(dir, "daemon.json");
  fs.writeFileSync(cfgFile, JSON.stringify(daemonJson, null, 2));
  const binds: Array<[string, string]> = fs.existsSync("/etc/docker") ? [[etcDocker, "/etc/docker"]] : [];
  const proc = spawnDaemon(["dockerd", "--config-file", cfgFile, "--containerd", containerd.address], files, env, logFile, binds);

  const cli = dockerCli();
  const docker = (args: string[], o: { timeoutMs?: number; stdin?: string } = {}) =>
    runRaw(isolatedArgv([cli, "-H", `unix://${socket}`, ...args], files), env, o.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS, o.stdin);

  let stopped = false;
  const handle: DockerdHandle = {
    pid: proc.pid,
    dir,
    socket,
    dataRoot,
    logFile,
    cliConfigDir,
    containerd,
    docker,
    async pull(ref, o = {}) {
      const args = ["pull", ...(o.platform ? ["--platform", o.platform] : []), ref];
      const r = await docker(args, { timeoutMs: o.timeoutMs });
      const m = r.code === 0 ? /Digest:\s*(sha256:[0-9a-f]{64})/.exec(r.stdout) : null;
      return { ...r, ...(m?.[1] ? { digest: m[1] } : {}) };
    },
    async imageInspect(ref) {
      const r = await docker(["image", "inspect", ref], { timeoutMs: 30_000 });
      if (r.code !== 0) return null;
      try {
        const arr = JSON.parse(r.stdout) as DockerImageInspect[];
        return arr[0] ?? null;
      } catch {
        return null;
      }
    },
    login(host, user, pass) {
      return docker(["login", "--username", user, "--password-stdin", host], { stdin: pass, timeoutMs: 30_000 });
    },
    writeAuth(host, user, pass) {
      const key = ["docker.io", "index.docker.io", "registry-1.docker.io"].includes(host) ? "https://index.docker.io/v1/" : host;
      const cfgPath = path.join(cliConfigDir, "config.json");
      let cfg: { auths?: Record<string, { auth: string }> } = {};
      try {
        cfg = JSON.parse(fs.readFileSync(cfgPath, "utf8")) as typeof cfg;
      } catch {
        /* new */
      }
      cfg.auths = { ...(cfg.auths ?? {}), [key]: { auth: Buffer.from(`${user}:${pass}`).toString("base64") } };
      fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    },
    logs: () => tail(logFile, 10_000),
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate(proc, 15_000);
      killStragglers(dir, true);
      await releaseDir(dir);
      if (ownContainerd) await containerd.stop();
    },
  };

  // Ready = GET /_ping on the unix socket says OK. Bounded: 300 tries / startTimeoutMs.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (let i = 0; i < 300 && Date.now() < deadline; i++) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    if (fs.existsSync(socket)) {
      try {
        const res = await fetch("http://docker/_ping", { unix: socket, signal: AbortSignal.timeout(2000) });
        if (res.ok && (await res.text()) === "OK") return handle;
      } catch {
        /* not yet */
      }
    }
    await sleep(100);
  }
  const why = `dockerd did not become ready (exit=${proc.exitCode} sig=${proc.signalCode}); log tail:\n${tail(logFile)}`;
  await handle.stop();
  throw new Error(why);
}

// ---------------------------------------------------------------------------------------
// ctr (containerd client) with a hosts dir
// ---------------------------------------------------------------------------------------

export interface CtrMirror {
  /** mirror base URL, e.g. "http://127.0.0.1:5000" or with a path when overridePath */
  url: string;
  /** hosts.toml override_path: url already contains the full API path (e.g. /v2/ghcr.io) */
  overridePath?: boolean;
  capabilities?: Array<"pull" | "resolve" | "push">;
  /** https mirrors with self-signed certs */
  skipVerify?: boolean;
  /** CA file path for https mirrors */
  ca?: string;
  header?: Record<string, string | string[]>;
}

export interface CtrHostConfig {
  mirrors: Array<string | CtrMirror>;
  /** the "real registry" server; default http://127.0.0.1:<closed port> */
  server?: string;
}

export interface CtrPullOptions {
  /** fully qualified ref, e.g. "docker.io/library/hello:latest" */
  ref: string;
  /** registry host ("docker.io", "ghcr.io", "quay.io", "127.0.0.1:5000") -> mirror(s) */
  hosts: Record<string, string | CtrMirror | CtrMirror[] | CtrHostConfig>;
  platform?: string;
  allPlatforms?: boolean;
  /** pass --plain-http (not needed when mirror URLs are http://: hosts.toml scheme wins) */
  plainHttp?: boolean;
  /** --user "user:pass" */
  user?: string;
  /** shared containerd; default: a private one started and stopped for this call */
  containerd?: ContainerdHandle;
  /** containerd namespace (default "default") */
  namespace?: string;
  /** snapshotter for unpacking (default "native": works on any fs; overlayfs also works on ext4) */
  snapshotter?: string;
  timeoutMs?: number;
}

export interface CtrRequest {
  method: string;
  url: string;
  host: string;
}

export interface CtrPullResult extends PullResult {
  /** every HTTP request ctr made (from --debug "do request" lines): shows ?ns=docker.io */
  requests: CtrRequest[];
  /** generated hosts.toml per registry host (for debugging) */
  hostsToml: Record<string, string>;
}

function tomlStr(s: string): string {
  return JSON.stringify(s);
}

function normalizeHost(v: string | CtrMirror | CtrMirror[] | CtrHostConfig): CtrHostConfig {
  if (typeof v === "string") return { mirrors: [v] };
  if (Array.isArray(v)) return { mirrors: v };
  if ("mirrors" in v) return v;
  return { mirrors: [v] };
}

/** Write <dir>/<registry>/hosts.toml files (containerd certs.d layout). Returns contents. */
export async function writeCtrHostsDir(dir: string, hosts: CtrPullOptions["hosts"]): Promise<Record<string, string>> {
  const closed = await closedPort();
  const out: Record<string, string> = {};
  for (const [registry, raw] of Object.entries(hosts)) {
    const cfg = normalizeHost(raw);
    const lines = [`# generated by ferry test harness: the real registry is a closed loopback port`, `server = ${tomlStr(cfg.server ?? `http://127.0.0.1:${closed}`)}`, ""];
    for (const m0 of cfg.mirrors) {
      const m: CtrMirror = typeof m0 === "string" ? { url: m0 } : m0;
      lines.push(`[host.${tomlStr(m.url)}]`);
      lines.push(`  capabilities = ${JSON.stringify(m.capabilities ?? ["pull", "resolve"])}`);
      if (m.overridePath) lines.push("  override_path = true");
      if (m.skipVerify) lines.push("  skip_verify = true");
      if (m.ca) lines.push(`  ca = ${tomlStr(m.ca)}`);
      if (m.header && Object.keys(m.header).length) {
        lines.push(`  [host.${tomlStr(m.url)}.header]`);
        for (const [k, v] of Object.entries(m.header)) lines.push(`    ${tomlStr(k)} = ${JSON.stringify(Array.isArray(v) ? v : [v])}`);
      }
      lines.push("");
    }
    const text = lines.join("\n");
    fs.mkdirSync(path.join(dir, registry), { recursive: true });
    fs.writeFileSync(path.join(dir, registry, "hosts.toml"), text);
    out[registry] = text;
  }
  return out;
}

/** Parse `msg="do request"` debug lines of ctr/containerd logs. */
export function parseCtrRequests(log: string): CtrRequest[] {
  const reqs: CtrRequest[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes('msg="do request"')) continue;
    const url = /\burl="([^"]*)"/.exec(line)?.[1];
    const method = /\brequest\.method=(\S+)/.exec(line)?.[1];
    const host = /\bhost="?([^"\s]*)"?/.exec(line)?.[1];
    if (url) reqs.push({ method: method ?? "?", url, host: host ?? "" });
  }
  return reqs;
}

/**
 * `ctr images pull --hosts-dir <dir> ref` against containerd. The pull (resolve + fetch) runs
 * in the ctr process itself, which is contained like the daemon. Unpack uses the "native"
 * snapshotter by default. The digest is read back from `ctr images ls`.
 */
export async function ctrPull(opts: CtrPullOptions): Promise<CtrPullResult> {
  const ownContainerd = !opts.containerd;
  const ctd = opts.containerd ?? (await startContainerd());
  const dir = makeTempDir("ctr");
  try {
    const hostsDir = path.join(dir, "certs.d");
    const hostsToml = await writeCtrHostsDir(hostsDir, opts.hosts);
    const ns = opts.namespace ?? "default";
    const args = [
      "--debug",
      "--namespace",
      ns,
      "images",
      "pull",
      "--hosts-dir",
      hostsDir,
      "--snapshotter",
      opts.snapshotter ?? "native",
      ...(opts.platform ? ["--platform", opts.platform] : []),
      ...(opts.allPlatforms ? ["--all-platforms"] : []),
      ...(opts.plainHttp ? ["--plain-http"] : []),
      ...(opts.user ? ["--user", opts.user] : []),
      opts.ref,
    ];
    // `--debug` is a global flag: it must precede the subcommand, right after --address.
    const r = await ctd.ctr(args, { timeoutMs: opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS });
    const requests = parseCtrRequests(r.stderr);
    let digest: string | undefined;
    if (r.code === 0) {
      const ls = await ctd.ctr(["--namespace", ns, "images", "ls"], { timeoutMs: 20_000 });
      for (const line of ls.stdout.split("\n")) {
        const cols = line.trim().split(/\s+/);
        if (cols[0] === opts.ref && cols[2] && SHA256_RE.test(cols[2])) digest = cols[2];
      }
    }
    return { ...r, ...(digest ? { digest } : {}), requests, hostsToml };
  } finally {
    await releaseDir(dir);
    if (ownContainerd) await ctd.stop();
  }
}

// ---------------------------------------------------------------------------------------
// podman / skopeo (containers/image stack)
// ---------------------------------------------------------------------------------------

export type PullFromMirror = "all" | "digest-only" | "tag-only";

export interface RegistryMirror {
  location: string;
  insecure?: boolean;
  pullFromMirror?: PullFromMirror;
}

export interface RegistryEntry {
  /** e.g. "docker.io" (default: location) */
  prefix?: string;
  /** the "real" registry; default (when prefix is set) 127.0.0.1:<closed port> */
  location?: string;
  insecure?: boolean;
  blocked?: boolean;
  mirrors?: RegistryMirror[];
}

export interface ContainersConfigOptions extends IsolationOptions {
  registries?: RegistryEntry[];
  /** applied to every mirror that does not set its own */
  pullFromMirror?: PullFromMirror;
  unqualifiedSearchRegistries?: string[];
  /** contents for auth.json (REGISTRY_AUTH_FILE); default {"auths":{}} */
  authJson?: unknown;
  /** registry host ("localhost:5443") -> CA PEM, written to <private /etc/containers>/certs.d */
  registryCAs?: Record<string, string>;
}

/** registries.conf (v2) text. */
export async function registriesConf(opts: ContainersConfigOptions): Promise<string> {
  const closed = await closedPort();
  const lines = [
    "# generated by ferry test harness",
    `unqualified-search-registries = ${JSON.stringify(opts.unqualifiedSearchRegistries ?? ["docker.io"])}`,
    'short-name-mode = "permissive"',
    "",
  ];
  for (const r of opts.registries ?? []) {
    if (!r.prefix && !r.location) throw new Error("registries.conf entry needs prefix or location");
    const location = r.location ?? `127.0.0.1:${closed}`;
    lines.push("[[registry]]");
    if (r.prefix) lines.push(`prefix = ${tomlStr(r.prefix)}`);
    lines.push(`location = ${tomlStr(location)}`);
    lines.push(`insecure = ${r.insecure ? "true" : "false"}`);
    if (r.blocked) lines.push("blocked = true");
    for (const m of r.mirrors ?? []) {
      lines.push("[[registry.mirror]]");
      lines.push(`location = ${tomlStr(m.location)}`);
      lines.push(`insecure = ${m.insecure ? "true" : "false"}`);
      const pfm = m.pullFromMirror ?? opts.pullFromMirror;
      if (pfm) lines.push(`pull-from-mirror = ${tomlStr(pfm)}`);
    }
    lines.push("");
  }
  return lines.join("\n");
}

interface ContainersSandbox {
  files: { hosts: string; resolv: string };
  env: Record<string, string>;
  binds: Array<[string, string]>;
  tmpfs: string[];
  root: string;
  runroot: string;
}

/**
 * A private /etc/containers (registries.conf, empty registries.conf.d to hide the host's
 * shortnames.conf, policy.json accepting anything, storage.conf with vfs, containers.conf
 * for a systemd-less host) + private /var/lib/containers and /dev/shm in the namespace.
 */
async function containersSandbox(dir: string, opts: ContainersConfigOptions, store?: string): Promise<ContainersSandbox> {
  const files = writeSandboxFiles(dir, opts);
  const etc = path.join(dir, "etc-containers");
  fs.mkdirSync(path.join(etc, "registries.conf.d"), { recursive: true });
  fs.mkdirSync(path.join(etc, "registries.d"), { recursive: true });
  for (const [host, pem] of Object.entries(opts.registryCAs ?? {})) {
    fs.mkdirSync(path.join(etc, "certs.d", host), { recursive: true });
    fs.writeFileSync(path.join(etc, "certs.d", host, "ca.crt"), pem);
  }
  const root = path.join(store ?? dir, "storage");
  const runroot = path.join(store ?? dir, "runroot");
  const podTmp = path.join(dir, "podman-tmp");
  const varLib = path.join(dir, "var-lib-containers");
  fs.mkdirSync(podTmp, { recursive: true });
  fs.mkdirSync(varLib, { recursive: true });
  fs.writeFileSync(path.join(etc, "registries.conf"), await registriesConf(opts));
  fs.writeFileSync(path.join(etc, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }, null, 2));
  fs.writeFileSync(
    path.join(etc, "storage.conf"),
    ["[storage]", 'driver = "vfs"', `graphroot = ${tomlStr(root)}`, `runroot = ${tomlStr(runroot)}`, ""].join("\n"),
  );
  // No systemd on this host: cgroupfs manager, file events logger (journald is absent),
  // CNI backend with an empty private config dir (never touch /etc/cni/net.d), private tmp.
  fs.writeFileSync(
    path.join(etc, "containers.conf"),
    [
      "[engine]",
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${tomlStr(path.join(podTmp, "events.log"))}`,
      `tmp_dir = ${tomlStr(podTmp)}`,
      `volume_path = ${tomlStr(path.join(podTmp, "volumes"))}`,
      "[network]",
      'network_backend = "cni"',
      `network_config_dir = ${tomlStr(path.join(dir, "cni"))}`,
      "",
    ].join("\n"),
  );
  const authFile = path.join(etc, "auth.json");
  fs.writeFileSync(authFile, JSON.stringify(opts.authJson ?? { auths: {} }));
  const env = childEnv(path.join(dir, "home"), {
    CONTAINERS_REGISTRIES_CONF: path.join(etc, "registries.conf"),
    CONTAINERS_CONF: path.join(etc, "containers.conf"),
    CONTAINERS_STORAGE_CONF: path.join(etc, "storage.conf"),
    REGISTRY_AUTH_FILE: authFile,
  });
  // /var/lib/containers must exist on the host to be a bind target (empty dir, harmless).
  fs.mkdirSync("/var/lib/containers", { recursive: true });
  const binds: Array<[string, string]> = [[varLib, "/var/lib/containers"]];
  if (fs.existsSync("/etc/containers")) binds.push([etc, "/etc/containers"]);
  return { files, env, binds, tmpfs: ["/dev/shm"], root, runroot };
}

export interface PodmanPullOptions extends ContainersConfigOptions {
  ref: string;
  /** convenience: applied as default pull-from-mirror for all mirrors */
  pullFromMirror?: PullFromMirror;
  /** pass --tls-verify=false (only needed when the primary location itself is insecure) */
  tlsVerify?: boolean;
  creds?: string;
  platform?: string;
  /** keep images across calls in this dir (caller removes it); default: temp, removed */
  storeDir?: string;
  timeoutMs?: number;
}

export interface PodmanPullResult extends PullResult {
  imageId?: string;
  registriesConf: string;
}

/**
 * Rootful `podman pull` with its own --root/--runroot, vfs, generated registries.conf whose
 * real-registry location is a closed loopback port. containers/image retries a failed pull
 * 3 times with 1s pauses (no --retry flag in podman 4.3): a refused pull takes ~3s.
 */
export async function podmanPull(opts: PodmanPullOptions): Promise<PodmanPullResult> {
  const dir = makeTempDir("pod");
  try {
    const sb = await containersSandbox(dir, opts, opts.storeDir);
    const base = [
      "podman",
      "--root",
      sb.root,
      "--runroot",
      sb.runroot,
      "--storage-driver",
      "vfs",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
      "--tmpdir",
      path.join(dir, "podman-tmp"),
    ];
    const args = [
      ...base,
      "pull",
      ...(opts.tlsVerify === false ? ["--tls-verify=false"] : []),
      ...(opts.creds ? ["--creds", opts.creds] : []),
      ...(opts.platform ? ["--platform", opts.platform] : []),
      opts.ref,
    ];
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;
    const r = await runRaw(isolatedArgv(args, sb.files, sb.binds, sb.tmpfs), sb.env, timeoutMs);
    let digest: string | undefined;
    let imageId: string | undefined;
    if (r.code === 0) {
      imageId = r.stdout.trim().split("\n").pop()?.trim() || undefined;
      const ins = await runRaw(isolatedArgv([...base, "image", "inspect", "--format", "{{.Digest}}", opts.ref], sb.files, sb.binds, sb.tmpfs), sb.env, 30_000);
      digest = SHA256_RE.exec(ins.stdout)?.[0];
    }
    const conf = fs.readFileSync(sb.env.CONTAINERS_REGISTRIES_CONF as string, "utf8");
    return { ...r, ...(digest ? { digest } : {}), ...(imageId ? { imageId } : {}), registriesConf: conf };
  } finally {
    await releaseDir(dir);
  }
}

export interface SkopeoOptions extends ContainersConfigOptions {
  timeoutMs?: number;
}

function hasFlag(args: string[], name: string): boolean {
  return args.some((a) => a === name || a.startsWith(name + "="));
}

/**
 * `skopeo copy src dest` (contained). Adds --src-tls-verify=false / --dest-tls-verify=false
 * for docker:// ends unless extraArgs set them. Returns the manifest digest (--digestfile).
 * No mirrors unless opts.registries configures some.
 */
export async function skopeoCopy(src: string, dest: string, extraArgs: string[] = [], opts: SkopeoOptions = {}): Promise<PullResult> {
  const dir = makeTempDir("sko");
  try {
    const sb = await containersSandbox(dir, { unqualifiedSearchRegistries: [], ...opts });
    const digestFile = path.join(dir, "digest");
    const args = ["skopeo", "copy", "--digestfile", digestFile];
    if (src.startsWith("docker://") && !hasFlag(extraArgs, "--src-tls-verify")) args.push("--src-tls-verify=false");
    if (dest.startsWith("docker://") && !hasFlag(extraArgs, "--dest-tls-verify")) args.push("--dest-tls-verify=false");
    args.push(...extraArgs, src, dest);
    const r = await runRaw(isolatedArgv(args, sb.files, sb.binds, sb.tmpfs), sb.env, opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS);
    let digest: string | undefined;
    if (r.code === 0) {
      try {
        digest = SHA256_RE.exec(fs.readFileSync(digestFile, "utf8"))?.[0];
      } catch {
        /* none */
      }
    }
    return { ...r, ...(digest ? { digest } : {}) };
  } finally {
    await releaseDir(dir);
  }
}

/** `skopeo inspect [args] ref` (contained, --tls-verify=false for docker:// unless given). */
export async function skopeoInspect(ref: string, args: string[] = [], opts: SkopeoOptions = {}): Promise<RunResult & { json?: unknown }> {
  const dir = makeTempDir("sko");
  try {
    const sb = await containersSandbox(dir, { unqualifiedSearchRegistries: [], ...opts });
    const argv = ["skopeo", "inspect"];
    if (ref.startsWith("docker://") && !hasFlag(args, "--tls-verify")) argv.push("--tls-verify=false");
    argv.push(...args, ref);
    const r = await runRaw(isolatedArgv(argv, sb.files, sb.binds, sb.tmpfs), sb.env, opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS);
    let json: unknown;
    if (r.code === 0) {
      try {
        json = JSON.parse(r.stdout);
      } catch {
        /* not JSON (e.g. --format) */
      }
    }
    return { ...r, ...(json !== undefined ? { json } : {}) };
  } finally {
    await releaseDir(dir);
  }
}
