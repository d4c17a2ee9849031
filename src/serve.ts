// `ferry serve`: load config, open the stores, listen. No upstream is contacted at
// start-up, so ferry serves its cache even when every upstream is unreachable.
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { AccessControl } from "./access/access.ts";
import { LimiterCounters } from "./access/limits.ts";
import { parseHtpasswd, type Htpasswd } from "./access/htpasswd.ts";
import { FsBlobStore } from "./cache/fs-blob-store.ts";
import type { MetaStore } from "./cache/meta-store.ts";
import type { SharedRedis } from "./redis/redis-client.ts";
import { ConfigError } from "./config/load.ts";
import { SqliteMetaStore } from "./cache/sqlite-meta-store.ts";
import type { Config } from "./config/config.ts";
import type { Server } from "bun";
import { createLogger, type Logger } from "./observe/logger.ts";
import { Metrics } from "./observe/metrics.ts";
import { TrafficStats } from "./observe/traffic.ts";
import { DownloadSlots } from "./registry/blob-download.ts";
import type { SharedBlobTier } from "./registry/blobs.ts";
import { CarriedState, Mirror } from "./registry/mirror.ts";
import { createApp } from "./server/app.ts";
import { peerAddresses } from "./access/client-ip.ts";
import type { Https } from "./tls/https.ts";
import { defaultPeerUrl } from "./registry/peer-blobs.ts";
import { exemptStreamFromIdleTimeout } from "./server/stream-timeout.ts";
import { MemoryLimit } from "./shared/memory-limit.ts";

/** Longest a SIGTERM waits for in-flight downloads to finish. */
const DRAIN_TIMEOUT_MS = 30_000;

export interface RunningServer {
  url: string;
  stop(): Promise<void>;
  /** Applies a new config without dropping connections (see RESTART_KEYS for what can't change). */
  reload(config: Config): Promise<void>;
}

/** What outlives a config reload: the stores, connections, counters and state in flight. */
interface Stores {
  log: Logger;
  blobStore: FsBlobStore;
  meta: MetaStore;
  redis?: SharedRedis;
  sharedBlobs?: SharedBlobTier;
  metrics: Metrics;
  traffic: TrafficStats;
  /** Tokens, cooldowns, single-flight (leases, blob downloads), [cache] max_downloads. */
  carried: CarriedState;
  memoryLimit: MemoryLimit;
  limiterCounters: LimiterCounters;
  /** The token secret of this process when neither auth.token_secret nor Redis gives one. */
  ownTokenSecret: string;
  /** The generation serving now (the gauges read it). */
  serving?: Mirror;
  /** The HTTPS listener and its certificate, when server.tls_* or [server.acme] is set. */
  https?: Https;
}

interface Generation {
  config: Config;
  mirror: Mirror;
  app: ReturnType<typeof createApp>;
}

/** Keys a reload cannot apply: they need a restart. */
const RESTART_KEYS: [string, (c: Config) => unknown][] = [
  ["server.listen", (c) => [c.server.hostname, c.server.port]],
  // Certificate files are read again on reload; where they are and the ACME settings are not.
  ["server.tls_listen", (c) => c.server.tls && [c.server.tls.hostname, c.server.tls.port]],
  ["server.tls_cert/tls_key (on or off)", (c) => Boolean(c.server.tls?.cert)],
  ["server.acme", (c) => c.server.tls?.acme],
  ["server.idle_timeout", (c) => c.server.idleTimeoutSeconds],
  ["cache.dir", (c) => c.cache.dir],
  ["cache.max_size", (c) => c.cache.maxSize],
  ["redis", (c) => c.redis],
  ["server.peer_url", (c) => c.server.peerUrl],
  ["s3", (c) => c.s3],
];

export async function serve(config: Config): Promise<RunningServer> {
  const stores = await openStores(config);
  const { log } = stores;
  let current = await buildGeneration(config, stores);
  stores.serving = current.mirror;
  // Both listeners dispatch to the current generation, so a reload is one assignment.
  const idleMs = config.server.idleTimeoutSeconds * 1000;
  const dispatch = async (request: Request, srv: Server<undefined>): Promise<Response> => {
    const peer = srv.requestIP(request)?.address;
    if (peer) peerAddresses.set(request, peer);
    return exemptStreamFromIdleTimeout(await current.app.handle(request), request, srv, idleMs);
  };
  const https = config.server.tls
    ? await (await import("./tls/https.ts")).Https.start(config.server.tls, {
        log,
        redis: stores.redis,
        locks: stores.redis ? stores.carried.locks : undefined,
        listener: { idleTimeout: config.server.idleTimeoutSeconds, maxRequestBodySize: 64 * 1024, fetch: dispatch },
      })
    : undefined;
  stores.https = https;
  const server = Bun.serve({
    hostname: config.server.hostname,
    port: config.server.port,
    // Bounds slow-loris clients; long enough for a range a shared download has not reached yet.
    idleTimeout: config.server.idleTimeoutSeconds,
    maxRequestBodySize: 64 * 1024,
    // ACME's HTTP-01 challenges and the redirect to HTTPS come before the app.
    fetch: https?.intercepts ? async (request, srv) => (await https.intercept(request, new URL(request.url).pathname)) ?? dispatch(request, srv) : dispatch,
  });
  const url = `http://${server.hostname}:${server.port}`;
  log.info(
    { listen: url, cache: config.cache.dir, redis: Boolean(stores.redis), s3: config.s3 ? { bucket: config.s3.bucket, redirect: config.s3.redirect } : false, registries: config.registries.map((r) => r.name) },
    "ferry listening",
  );

  const reload = async (next: Config) => {
    const changed = RESTART_KEYS.filter(([, get]) => !Bun.deepEquals(get(next), get(current.config))).map(([key]) => key);
    if (changed.length) throw new Error(`these keys changed and need a restart: ${changed.join(", ")}`);
    await stores.https?.reloadFiles(next.server.tls);
    const generation = await buildGeneration(next, stores);
    stores.carried.downloadSlots.max = next.cache.maxDownloads;
    stores.memoryLimit.limitBytes = next.server.memoryLimit;
    void stores.blobStore.rescan(); // a reload after `ferry prune` recounts the cache
    const previous = current;
    current = generation;
    stores.serving = generation.mirror;
    log.level = next.log.level;
    // Downloads already running on the previous generation finish on their own.
    previous.mirror.close();
    log.info({ registries: next.registries.map((r) => r.name) }, "config reloaded");
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info("draining: no new connections; waiting for downloads in flight");
      await Promise.all([server.stop(false), stores.https?.stop()]);
      // Every generation's downloads: they share one map (CarriedState).
      const downloads = [...current.mirror.blobs.inFlight.values()].map((d) => d.finished);
      await Promise.race([Promise.all(downloads), Bun.sleep(DRAIN_TIMEOUT_MS)]);
      current.mirror.close();
      stores.memoryLimit.stop();
      stores.meta.close();
      await stores.redis?.close();
      log.info("stopped");
    })());
  return { url, stop, reload };
}

async function openStores(config: Config): Promise<Stores> {
  const log = createLogger(config.log.level);
  const memoryLimit = new MemoryLimit(config.server.memoryLimit).start();
  await mkdir(config.cache.dir, { recursive: true });
  const blobStore = new FsBlobStore(config.cache.dir, {
    maxSize: config.cache.maxSize,
    onEvict: (r) => log.info({ evictedFiles: r.files, evictedBytes: r.bytes, cacheBytes: r.remaining }, "evicted least recently used blobs (cache.max_size)"),
    onDiskFull: (why) =>
      why ? log.error({ cache: config.cache.dir, reason: why }, "cache disk full: blobs are streamed to clients without caching") : log.info({ cache: config.cache.dir }, "cache disk has room again"),
    onNoHashWorker: () => log.warn("the hash worker thread did not start: downloads hash on the event loop"),
    // Serving starts before the index is complete; max_size eviction waits for it.
    onIndexed: (r) => log.info({ cacheBlobs: r.files, cacheBytes: r.bytes, ms: r.ms }, "cache index loaded"),
  });
  await blobStore.init();
  // Embedded by default; Redis and S3 turn the replicas into one mirror. Neither is
  // needed to serve: they join (and rejoin) in the background.
  const localMeta = new SqliteMetaStore(config.cache.dir);
  // Redis and S3 clients are loaded only when configured: the embedded default starts faster.
  const redisModules = config.redis
    ? await Promise.all([import("./redis/redis-client.ts"), import("./cache/shared-meta-store.ts"), import("./cache/locks.ts")])
    : undefined;
  const redis = redisModules ? new redisModules[0].SharedRedis(config.redis!, log) : undefined;
  // A moment for Redis to connect, so a (re)started replica's first requests use the
  // shared state; if it is down, ferry starts anyway with per-process state.
  if (redis && !(await redis.waitReady(2_000))) log.warn("redis not reachable at start-up; starting with per-process state");
  const stores: Stores = {
    log,
    blobStore,
    meta: redis && redisModules ? new redisModules[1].SharedMetaStore(localMeta, redis) : localMeta,
    redis,
    sharedBlobs: config.s3
      ? { store: new (await import("./cache/s3-blob-store.ts")).S3BlobStore(config.s3), redirect: config.s3.redirect, urlTtlSeconds: config.s3.redirectTtlSeconds }
      : undefined,
    carried: new CarriedState(new DownloadSlots(config.cache.maxDownloads), redis, redis && redisModules ? new redisModules[2].RedisLocks(redis, config.redis!.lockLeaseMs, config.server.peerUrl ?? defaultPeerUrl(config.server.hostname, config.server.port)) : undefined),
    limiterCounters: new LimiterCounters(),
    ownTokenSecret: randomBytes(32).toString("hex"),
    traffic: new TrafficStats(),
    memoryLimit,
    metrics: new Metrics({
      memoryLimitCollections: () => memoryLimit.collections,
      inFlightDownloads: () => stores.serving?.blobs.inFlight.size ?? 0,
      cacheBytes: () => blobStore.usage.size,
      cacheBlobs: () => blobStore.usage.count,
      cacheMaxBytes: config.cache.maxSize,
      certificate: () => stores.https?.state,
    }),
  };
  return stores;
}

async function buildGeneration(config: Config, stores: Stores): Promise<Generation> {
  const mirror = new Mirror(config, stores.meta, stores.blobStore, stores.log, {
    redis: stores.redis,
    blobs: stores.sharedBlobs,
    metrics: stores.metrics,
    traffic: stores.traffic,
    carried: stores.carried,
  });
  const auth = config.auth ? { secret: await tokenSecret(config, stores.redis, stores.ownTokenSecret), users: await loadUsers(config) } : undefined;
  const access = new AccessControl(config, mirror, auth, stores.redis, stores.limiterCounters);
  return { config, mirror, app: createApp(mirror, access, () => stores.https?.state) };
}

async function loadUsers(config: Config): Promise<Htpasswd> {
  if (!config.auth?.htpasswd) return new Map();
  const file = Bun.file(config.auth.htpasswd);
  if (!(await file.exists())) throw new ConfigError("auth.htpasswd", `file not found: ${config.auth.htpasswd}`);
  return parseHtpasswd(await file.text());
}

/**
 * The key ferry's tokens are signed with: auth.token_secret; else one shared by the
 * replicas through Redis (the first one to start picks it); else this process's own
 * (the same across reloads, so a SIGHUP logs no one out).
 */
async function tokenSecret(config: Config, redis: SharedRedis | undefined, mine: string): Promise<string> {
  if (config.auth?.tokenSecret) return config.auth.tokenSecret;
  if (!redis) return mine;
  const key = redis.key("auth", "token-secret");
  await redis.try((c) => c.set(key, mine, "NX"));
  return (await redis.try((c) => c.get(key))) ?? mine;
}
