// Issue 17.2: Redis up but without the keys (restarted without persistence, an eviction,
// an expiry) must not hide what the replica's own SQLite copy knows. Real redis-server
// restarted empty; the upstream stopped, so only the local copy can answer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, hubRegistry, sha256 } from "../harness/oci.ts";
import { waitFor } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let redis: RedisServer;
let image: BuiltImage;
let ferry: FerryProcess;
const cacheDir = mkdtempSync(join(tmpdir(), "ferry-lost-keys-"));
const start = () => startFerry({ config: `[redis]\nurl = "${redis.url}"\n${hubRegistry(upstream.url)}`, cacheDir });

beforeAll(async () => {
  [upstream, redis] = await Promise.all([startUpstream(), startRedis()]);
  image = await fiveLayer({ seed: "lost-keys" });
  await upstream.push(image, "library/lost:latest");
  ferry = await start();
}, 120_000);

afterAll(async () => {
  await ferry?.stop();
  await Promise.all([upstream?.stop(), redis?.dispose()]);
  rmSync(cacheDir, { recursive: true, force: true });
});

describe("Redis restarted empty", () => {
  test("with the upstream stopped, the cached tag still pulls from the local copy, and Redis gets it back", async () => {
    const first = await fetch(`${ferry.url}/v2/library/lost/manifests/latest`, { headers: { Accept: ACCEPT } });
    expect(first.headers.get("docker-content-digest")).toBe(image.manifestDigest);
    await first.arrayBuffer();
    for (const blob of image.blobs) expect(sha256(await (await fetch(`${ferry.url}/v2/library/lost/blobs/${blob.digest}`)).arrayBuffer())).toBe(blob.digest);

    // The fleet restarts with Redis, which has no persistence: every key is gone, and
    // the replica's in-process memory too; its SQLite copy on disk is what is left.
    await ferry.stop();
    await redis.restart();
    ferry = await start();
    await waitFor(async () => ((await (await fetch(`${ferry.url}/readyz`)).json()) as { checks: { redis: { ok: boolean } } }).checks.redis.ok, {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: "ferry reconnected to redis",
    });
    await upstream.stopAll();
    try {
      const r = await fetch(`${ferry.url}/v2/library/lost/manifests/latest`, { headers: { Accept: ACCEPT } });
      expect({ status: r.status, digest: r.headers.get("docker-content-digest") }).toEqual({ status: 200, digest: image.manifestDigest });
      expect(sha256(await r.arrayBuffer())).toBe(image.manifestDigest);
      const tags = await fetch(`${ferry.url}/v2/library/lost/tags/list`);
      expect({ status: tags.status, body: await tags.json() }).toEqual({ status: 200, body: { name: "library/lost", tags: ["latest"] } });
      const catalog = (await (await fetch(`${ferry.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories).toContain("library/lost");
    } finally {
      await upstream.start();
    }
    // The mapping is shared again: written back to Redis for the other replicas.
    const direct = new Redis(redis.url);
    try {
      const stored = await direct.get("ferry:tag:{docker.io/library/lost}:latest");
      expect(stored && JSON.parse(stored).digest).toBe(image.manifestDigest);
      expect(await direct.smembers("ferry:tags:{docker.io/library/lost}")).toEqual(["latest"]);
    } finally {
      direct.disconnect();
    }
  }, 60_000);
});
