// `ferry serve`: load config, open the stores, listen. No upstream is contacted at
// start-up, so ferry serves its cache even when every upstream is unreachable.
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { AccessControl } from "./access/access.ts";
import { parseHtpasswd, type Htpasswd } from "./access/htpasswd.ts";
import { FsBlobStore } from "./cache/fs-blob-store.ts";
import { RedisLocks } from "./cache/locks.ts";
import type { MetaStore } from "./cache/meta-store.ts";
import { SharedRedis } from "./cache/redis-client.ts";
import { ConfigError } from "./config/load.ts";
import { S3BlobStore } from "./cache/s3-blob-store.ts";
import { SharedMetaStore } from "./cache/shared-meta-store.ts";
import { SqliteMetaStore } from "./cache/sqlite-meta-store.ts";
import type { Config } from "./config/config.ts";
import { createLogger } from "./observe/logger.ts";
import { Mirror } from "./registry/mirror.ts";
import { createApp } from "./server/app.ts";
import { peerAddresses } from "./server/registry-api.ts";

/** Longest a SIGTERM waits for in-flight downloads to finish. */
const DRAIN_TIMEOUT_MS = 30_000;

export interface RunningServer {
  url: string;
  stop(): Promise<void>;
}

export async function serve(config: Config): Promise<RunningServer> {
  const log = createLogger(config.log.level);
  await mkdir(config.cache.dir, { recursive: true });
  const blobStore = new FsBlobStore(config.cache.dir, {
    maxSize: config.cache.maxSize,
    onEvict: (r) => log.info({ evictedFiles: r.files, evictedBytes: r.bytes, cacheBytes: r.remaining }, "evicted least recently used blobs (cache.max_size)"),
  });
  await blobStore.init();
  // Embedded by default; Redis and S3 turn the replicas into one mirror. Neither is
  // contacted before serving: they join (and rejoin) in the background.
  const localMeta = new SqliteMetaStore(config.cache.dir);
  const redis = config.redis ? new SharedRedis(config.redis, log) : undefined;
  // A moment for Redis to connect, so a (re)started replica's first requests use the
  // shared state; if it is down, ferry starts anyway with per-process state.
  if (redis && !(await redis.waitReady(2_000))) log.warn("redis not reachable at start-up; starting with per-process state");
  const meta: MetaStore = redis ? new SharedMetaStore(localMeta, redis) : localMeta;
  const sharedBlobs = config.s3
    ? { store: new S3BlobStore(config.s3), redirect: config.s3.redirect, urlTtlSeconds: config.s3.redirectTtlSeconds }
    : undefined;
  const mirror = new Mirror(config, meta, blobStore, log, { redis, blobs: sharedBlobs, locks: redis ? new RedisLocks(redis, config.redis!.lockLeaseMs) : undefined });
  const access = new AccessControl(config, (name) => mirror.upstreamFor(name), config.auth ? { secret: await tokenSecret(config, redis), users: await loadUsers(config) } : undefined, redis);
  const app = createApp(mirror, access).listen({
    hostname: config.server.hostname,
    port: config.server.port,
    // Bounds slow-loris clients; long enough for a range a shared download has not reached yet.
    idleTimeout: config.server.idleTimeoutSeconds,
    maxRequestBodySize: 64 * 1024,
  });
  const server = app.server!;
  const url = `http://${server.hostname}:${server.port}`;
  // HTTPS beside HTTP (a single VPS without a load balancer): the same app, a second listener.
  const tls = config.server.tls;
  const tlsServer = tls
    ? Bun.serve({
        hostname: tls.hostname,
        port: tls.port,
        tls: { cert: Bun.file(tls.cert), key: Bun.file(tls.key) },
        idleTimeout: config.server.idleTimeoutSeconds,
        maxRequestBodySize: 64 * 1024,
        fetch(request, srv) {
          const peer = srv.requestIP(request)?.address;
          if (peer) peerAddresses.set(request, peer);
          return app.handle(request);
        },
      })
    : undefined;
  if (tlsServer) log.info({ listen: `https://${tlsServer.hostname}:${tlsServer.port}` }, "ferry listening (TLS)");
  log.info(
    { listen: url, cache: config.cache.dir, redis: Boolean(redis), s3: config.s3 ? { bucket: config.s3.bucket, redirect: config.s3.redirect } : false, registries: config.registries.map((r) => r.name) },
    "ferry listening",
  );

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info("draining: no new connections; waiting for downloads in flight");
      await Promise.all([server.stop(false), tlsServer?.stop(false)]);
      const downloads = [...mirror.blobs.inFlight.values()].map((d) => d.finished);
      await Promise.race([Promise.all(downloads), Bun.sleep(DRAIN_TIMEOUT_MS)]);
      mirror.close();
      meta.close();
      await redis?.close();
      log.info("stopped");
    })());
  return { url, stop };
}

async function loadUsers(config: Config): Promise<Htpasswd> {
  if (!config.auth?.htpasswd) return new Map();
  const file = Bun.file(config.auth.htpasswd);
  if (!(await file.exists())) throw new ConfigError("auth.htpasswd", `file not found: ${config.auth.htpasswd}`);
  return parseHtpasswd(await file.text());
}

/**
 * The key ferry's tokens are signed with: auth.token_secret; else one shared by the
 * replicas through Redis (the first one to start picks it); else this process's own.
 */
async function tokenSecret(config: Config, redis: SharedRedis | undefined): Promise<string> {
  if (config.auth?.tokenSecret) return config.auth.tokenSecret;
  const mine = randomBytes(32).toString("hex");
  if (!redis) return mine;
  const key = redis.key("auth", "token-secret");
  await redis.try((c) => c.set(key, mine, "NX"));
  return (await redis.try((c) => c.get(key))) ?? mine;
}
