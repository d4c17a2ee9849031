// /api/repositories on a replica (Redis-backed meta store, real redis-server): the
// listing shows what other replicas cached through Redis (tags, digests, image sizes from
// the shared manifests), this replica's own pulls, a tag another replica moves between two
// calls, and its local copy while Redis is down; on a Redis Cluster, repositories spread
// over every master. Two replicas in process, each with its own SQLite copy, as serve.ts
// wires them.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import type { RepositoryRef } from "../../src/cache/meta-store.ts";
import { SharedMetaStore } from "../../src/cache/shared-meta-store.ts";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { Mirror } from "../../src/registry/mirror.ts";
import { SharedRedis, type RedisConfig } from "../../src/redis/redis-client.ts";
import { statusApi, type StatusView } from "../../src/server/status-api.ts";
import { OTHER_REGISTRIES_OFF } from "../harness/oci.ts";
import { waitFor } from "../harness/proc.ts";
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from "../harness/redis.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const scratch = mkdtempSync(join(tmpdir(), "ferry-redis-repositories-"));
let server: RedisServer;
let cluster: RedisCluster | undefined;
const replicas: { redis: SharedRedis; local: SqliteMetaStore; meta: SharedMetaStore; mirror: Mirror }[] = [];

function replica(name: string, redisConfig: RedisConfig = { url: server.url, keyPrefix: "ferry:" }) {
  const dir = join(scratch, name);
  const config = parseConfig(`[cache]\ndir = "${dir}"\ntag_ttl = "10m"\n${OTHER_REGISTRIES_OFF}\n[[registry]]\nname = "docker.io"\nendpoints = ["http://127.0.0.1:9"]\n`);
  const redis = new SharedRedis(redisConfig, createLogger("silent"));
  const local = new SqliteMetaStore(dir);
  const meta = new SharedMetaStore(local, redis);
  const r = { redis, local, meta, mirror: new Mirror(config, meta, new FsBlobStore(dir), createLogger("silent"), { redis }) };
  replicas.push(r);
  return r;
}

beforeAll(async () => {
  server = await startRedis();
}, 30_000);

afterAll(async () => {
  for (const r of replicas) {
    r.mirror.close();
    r.local.close();
    r.redis.client.disconnect();
  }
  await Promise.all([server?.dispose(), cluster?.dispose()]);
  rmSync(scratch, { recursive: true, force: true });
});

/** An image manifest of config + layers = `size` bytes, cached by `meta` and tagged. */
async function putImage(meta: SharedMetaStore, repo: RepositoryRef, tag: string, size: number, checkedAt: number) {
  const body = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: `sha256:${"c".repeat(64)}`, size: 10 }, layers: [{ digest: `sha256:${size.toString(16).padStart(64, "0")}`, size: size - 10 }] }));
  const digest = digestOf(body);
  await meta.putManifest(repo, { digest, mediaType: OCI_MANIFEST, body });
  await meta.putTag(repo, tag, { digest, mediaType: OCI_MANIFEST, size: body.byteLength, checkedAt });
  return digest;
}

type Listed = { registry: string; repository: string; tags: { tag: string; digest: string; size: number | null; checkedAt: string; pulledAt: string | null; policy: unknown }[] }[];
async function listing(mirror: Mirror): Promise<Listed> {
  const res = await statusApi({ repositories: () => mirror.cachedRepositories() } as StatusView).handle(new Request("http://ferry.test/api/repositories"));
  expect(res.status).toBe(200);
  return ((await res.json()) as { repositories: Listed }).repositories;
}

const iso = (ms: number) => new Date(ms).toISOString();
const policy = { immutable: false, ttlSeconds: 600, rule: "cache.tag_ttl" };
const tagOf = (tag: string, digest: string, size: number, checkedAt: number, pulledAt: number | null = null) => ({ tag, digest, mediaType: OCI_MANIFEST, size, checkedAt: iso(checkedAt), pulledAt: pulledAt === null ? null : iso(pulledAt), policy });

test("a replica lists the other replicas' tags and sizes through Redis, its own pulls, a tag moved between calls, and its local copy while Redis is down", async () => {
  const a = replica("a");
  const b = replica("b");
  await waitFor(() => a.redis.ready && b.redis.ready, { timeoutMs: 10_000, intervalMs: 50, what: "both replicas connected to redis" });
  const t0 = Date.parse("2026-11-01T00:00:00.000Z");
  const shared = { registry: "docker.io", repository: "library/shared" };
  const theirs = { registry: "docker.io", repository: "library/theirs" };
  const mine = { registry: "docker.io", repository: "library/mine" };
  // B caches two repositories; A one of its own and a tag of the shared one.
  const sharedLatest = await putImage(b.meta, shared, "latest", 5000, t0);
  const theirsV1 = await putImage(b.meta, theirs, "v1", 7000, t0 + 1000);
  const mineEdge = await putImage(a.meta, mine, "edge", 3000, t0 + 2000);
  const sharedOld = await putImage(a.meta, shared, "old", 4000, t0 + 3000);
  a.meta.touchTag(mine, "edge", t0 + 4000);

  expect(await listing(a.mirror)).toEqual([
    { ...mine, tags: [tagOf("edge", mineEdge, 3000, t0 + 2000, t0 + 4000)] },
    { ...shared, tags: [tagOf("latest", sharedLatest, 5000, t0), tagOf("old", sharedOld, 4000, t0 + 3000)] },
    { ...theirs, tags: [tagOf("v1", theirsV1, 7000, t0 + 1000)] },
  ]);

  // B moves a tag and adds one: A's next answer has them (Redis is the truth).
  const theirsV1Moved = await putImage(b.meta, theirs, "v1", 9000, t0 + 5000);
  const theirsV2 = await putImage(b.meta, theirs, "v2", 8000, t0 + 6000);
  const expected = [
    { ...mine, tags: [tagOf("edge", mineEdge, 3000, t0 + 2000, t0 + 4000)] },
    { ...shared, tags: [tagOf("latest", sharedLatest, 5000, t0), tagOf("old", sharedOld, 4000, t0 + 3000)] },
    { ...theirs, tags: [tagOf("v1", theirsV1Moved, 9000, t0 + 5000), tagOf("v2", theirsV2, 8000, t0 + 6000)] },
  ];
  expect(await listing(a.mirror)).toEqual(expected);

  // Redis down: A answers from its own copy, which the listings above filled.
  await server.stop();
  await waitFor(() => !a.redis.ready, { timeoutMs: 10_000, intervalMs: 50, what: "replica a saw redis go" });
  expect(await listing(a.mirror)).toEqual(expected);
  await server.start();
}, 60_000);

test("on a Redis Cluster, a replica lists the repositories another cached, whatever master holds them, and a tag moved between calls", async () => {
  cluster = await startRedisCluster();
  const redisConfig = { clusterNodes: cluster.nodes, keyPrefix: "ferry:" };
  const a = replica("cluster-a", redisConfig);
  const b = replica("cluster-b", redisConfig);
  await waitFor(() => a.redis.ready && b.redis.ready, { timeoutMs: 15_000, intervalMs: 50, what: "both replicas connected to the cluster" });
  const t0 = Date.parse("2026-11-02T00:00:00.000Z");
  const expected: Listed = [];
  for (let i = 0; i < 30; i++) {
    const repo = { registry: "docker.io", repository: `library/spread-${String(i).padStart(2, "0")}` };
    const latest = await putImage(b.meta, repo, "latest", 2000 + i, t0 + i);
    const stable = await putImage(b.meta, repo, "stable", 3000 + i, t0 + i);
    expected.push({ ...repo, tags: [tagOf("latest", latest, 2000 + i, t0 + i), tagOf("stable", stable, 3000 + i, t0 + i)] });
  }
  // The 30 repositories' keys are on more than one master.
  const owners = new Set(await Promise.all(expected.map(async (r) => (await cluster!.masterFor(`{${r.registry}/${r.repository}}`)).port)));
  expect(owners.size).toBeGreaterThan(1);
  expect(await listing(a.mirror)).toEqual(expected);
  const repo = { registry: "docker.io", repository: "library/spread-07" };
  const moved = await putImage(b.meta, repo, "latest", 9999, t0 + 100);
  expected[7]!.tags[0] = tagOf("latest", moved, 9999, t0 + 100);
  expect(await listing(a.mirror)).toEqual(expected);
}, 90_000);
