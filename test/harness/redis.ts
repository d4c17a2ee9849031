// A real Redis (Debian's redis-server) on loopback for tests of ferry's shared tier.
//
// Runs in the foreground (daemonize no) with a generated config in its own temp dir,
// so it is stopped by PID and dies with the test process (proc.ts exit hooks +
// pdeathsig). No persistence (save "", appendonly no): a restart empties it, which is
// what "Redis lost its data" tests want; the port stays the same so clients reconnect.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOOPBACK, freePort, onExit, pidAlive, run, spawnDaemon, waitFor, type Daemon } from "./proc.ts";

export interface RedisOptions {
  /** Fixed port (default: a free one). */
  port?: number;
  /** Extra redis.conf lines, e.g. ["maxmemory 10mb"]. */
  extraConfig?: string[];
  /** Time budget for startup, in ms (default 10 s). */
  startTimeoutMs?: number;
}

export interface RedisServer {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** PID of the current redis-server process (changes after start()/restart()). */
  readonly pid: number;
  readonly dir: string;
  /** SIGTERM (SIGKILL after a grace period); the dir is kept so start() works again. */
  stop(): Promise<void>;
  /** stop() then start(): same port, same dir. */
  restart(): Promise<void>;
  /** SIGKILL, as a crash would; waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts again after kill()/stop(); no-op when already running. */
  start(): Promise<void>;
  /** Stops it and removes its temp dir (also done at process exit). */
  dispose(): Promise<void>;
  logTail(bytes?: number): string;
}

/** Sends PING over a raw socket: true on "+PONG" (a LOADING Redis is not ready). */
function redisPing(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: LOOPBACK, port });
    let buf = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
    sock.once("error", () => done(false));
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "ferry-redis-"));
  const unregisterRm = onExit(() => rmSync(dir, { recursive: true, force: true }));
  const confPath = join(dir, "redis.conf");
  const logFile = join(dir, "redis.log");
  writeFileSync(
    confPath,
    [
      `bind ${LOOPBACK}`,
      `port ${port}`,
      `dir ${dir}`,
      "daemonize no",
      'save ""',
      "appendonly no",
      'logfile ""', // stdout, which spawnDaemon appends to logFile
      "databases 16",
      ...(opts.extraConfig ?? []),
      "",
    ].join("\n"),
  );
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;

  let daemon: Daemon | undefined;

  async function start(): Promise<void> {
    if (daemon?.alive()) return;
    const d = spawnDaemon(["redis-server", confPath], { logFile });
    daemon = d;
    let exited = false;
    void d.exited.then(() => (exited = true));
    await waitFor(
      async () => {
        if (exited) throw new Error(`redis-server exited during startup`);
        return redisPing(port);
      },
      { timeoutMs: startTimeoutMs, intervalMs: 50, what: `redis-server on ${port}`, onTimeout: () => d.logTail() },
    ).catch(async (e) => {
      await d.stop(500);
      throw e;
    });
  }

  async function stop(): Promise<void> {
    await daemon?.stop(3000);
  }

  async function kill(): Promise<void> {
    await daemon?.kill();
  }

  await start();

  return {
    url: `redis://${LOOPBACK}:${port}`,
    port,
    get pid() {
      return daemon?.pid ?? -1;
    },
    dir,
    stop,
    async restart() {
      await stop();
      await start();
    },
    kill,
    start,
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
      unregisterRm();
    },
    logTail: (bytes?: number) => daemon?.logTail(bytes) ?? "",
  };
}

export interface RedisCluster {
  /** "127.0.0.1:PORT" of every master, for ferry's redis.cluster_nodes. */
  readonly nodes: string[];
  readonly masters: RedisServer[];
  /** The master serving a key's hash slot (asked of the cluster itself). */
  masterFor(key: string): Promise<RedisServer>;
  /** Waits until every master still running reports cluster_state:ok. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  dispose(): Promise<void>;
}

function redisCli(port: number, ...args: string[]): Promise<string> {
  return run(["redis-cli", "-h", LOOPBACK, "-p", String(port), ...args], { timeoutMs: 10_000 }).then((r) => r.stdout);
}

/**
 * A real Redis Cluster of `masters` redis-servers on loopback, made with
 * `redis-cli --cluster create` and no replicas. cluster-require-full-coverage is off,
 * as docs/high-availability.md asks: with a master gone, the slots of the others keep answering.
 */
export async function startRedisCluster(opts: { masters?: number } = {}): Promise<RedisCluster> {
  const count = opts.masters ?? 3;
  const masters = await Promise.all(
    Array.from({ length: count }, () =>
      startRedis({ extraConfig: ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 1000", "cluster-require-full-coverage no"] }),
    ),
  );
  const nodes = masters.map((m) => `${LOOPBACK}:${m.port}`);
  await redisCli(masters[0]!.port, "--cluster", "create", ...nodes, "--cluster-replicas", "0", "--cluster-yes");
  const cluster: RedisCluster = {
    nodes,
    masters,
    async masterFor(key) {
      const slot = Number((await redisCli(masters[0]!.port, "CLUSTER", "KEYSLOT", key)).trim());
      for (const m of masters) {
        if (!pidAlive(m.pid)) continue;
        // CLUSTER NODES: the line flagged "myself" lists this master's slot ranges from field 9 on.
        const me = (await redisCli(m.port, "CLUSTER", "NODES")).split("\n").find((l) => l.includes("myself"));
        const ranges = me?.trim().split(" ").slice(8) ?? [];
        const owns = ranges.some((r) => {
          const [a = -1, b = a] = r.split("-").map(Number);
          return slot >= a && slot <= b;
        });
        if (owns) return m;
      }
      throw new Error(`no running master owns slot ${slot} of ${key}`);
    },
    async waitHealthy(timeoutMs = 20_000) {
      await waitFor(
        async () => {
          for (const m of masters) {
            if (!pidAlive(m.pid)) continue;
            if (!(await redisCli(m.port, "CLUSTER", "INFO").catch(() => "")).includes("cluster_state:ok")) return false;
          }
          return true;
        },
        { timeoutMs, intervalMs: 100, what: "redis cluster state ok" },
      );
    },
    async dispose() {
      await Promise.all(masters.map((m) => m.dispose()));
    },
  };
  await cluster.waitHealthy();
  return cluster;
}

export interface RedisSentinelSet {
  /** "127.0.0.1:PORT" of the sentinel, for ferry's redis.sentinels. */
  readonly sentinel: string;
  readonly name: string;
  /** The two redis-servers; which one is master changes with failover(). */
  readonly servers: RedisServer[];
  /** The server Sentinel names as master now. */
  master(): Promise<RedisServer>;
  /** SENTINEL FAILOVER: the replica becomes master; resolves once Sentinel says so. */
  failover(): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * A master, one replica and one redis-sentinel (quorum 1) on loopback, all real
 * redis-server processes. Used where ferry must follow a failover.
 */
export async function startRedisSentinel(name = "ferrymaster"): Promise<RedisSentinelSet> {
  const primary = await startRedis();
  const replica = await startRedis({ extraConfig: [`replicaof ${LOOPBACK} ${primary.port}`] });
  const servers = [primary, replica];
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ferry-sentinel-"));
  const unregisterRm = onExit(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, "sentinel.conf");
  writeFileSync(
    conf,
    [`port ${port}`, `bind ${LOOPBACK}`, `dir ${dir}`, `sentinel monitor ${name} ${LOOPBACK} ${primary.port} 1`, `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 5000`, "sentinel resolve-hostnames no", ""].join("\n"),
  );
  const sentinel = spawnDaemon(["redis-server", conf, "--sentinel"], { logFile: join(dir, "sentinel.log") });
  const masterPort = async () => Number((await redisCli(port, "SENTINEL", "get-master-addr-by-name", name)).trim().split("\n")[1] ?? 0);
  // Ready once Sentinel knows the master and its replica is in sync.
  await waitFor(
    async () => (await masterPort()) === primary.port && (await redisCli(replica.port, "INFO", "replication")).includes("master_link_status:up") && (await redisCli(port, "SENTINEL", "replicas", name)).includes(String(replica.port)),
    { timeoutMs: 20_000, intervalMs: 100, what: "redis sentinel with master and replica", onTimeout: () => sentinel.logTail() },
  );
  const set: RedisSentinelSet = {
    sentinel: `${LOOPBACK}:${port}`,
    name,
    servers,
    async master() {
      const p = await masterPort();
      return servers.find((s) => s.port === p) ?? primary;
    },
    async failover() {
      const before = await masterPort();
      const other = servers.find((s) => s.port !== before)!;
      // The replica must be in sync (e.g. after the master was restarted) before it can be promoted.
      await waitFor(async () => (await redisCli(other.port, "INFO", "replication")).includes("master_link_status:up"), { timeoutMs: 20_000, intervalMs: 100, what: "replica in sync" });
      // On a loaded machine Sentinel may enter TILT mode (its timer ran late) and drop the
      // failover for 30 s: ask again until the switch happened, within a bound.
      let askedAt = 0;
      await waitFor(
        async () => {
          if ((await masterPort()) === other.port && (await redisCli(other.port, "ROLE")).startsWith("master")) return true;
          if (Date.now() - askedAt > 6_000) {
            askedAt = Date.now();
            await redisCli(port, "SENTINEL", "FAILOVER", name); // "INPROG" while one runs: harmless
          }
          return false;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: "sentinel failover", onTimeout: () => sentinel.logTail() },
      );
    },
    async dispose() {
      await sentinel.stop();
      await Promise.all(servers.map((s) => s.dispose()));
      rmSync(dir, { recursive: true, force: true });
      unregisterRm();
    },
  };
  return set;
}
