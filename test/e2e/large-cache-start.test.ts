// Issue 21, scenario 9: ferry listens before it has counted a large local tier, serves its
// cached manifests and blobs meanwhile, and applies max_size once the count is complete.
// The tier is written in ferry's on-disk format by the bench's fixture writer; the only
// upstream is a closed loopback port, so every answer here comes from the cache.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeCacheFixture, type CacheFixture } from "../../bench/lib/cache-fixture.ts";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const sha256 = (bytes: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;

let root: string;
let tier: CacheFixture;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "ferry-large-tier-"));
  tier = await writeCacheFixture(join(root, "cache"), { blobs: 20_000, repositories: 10, tagsPerRepository: 1 });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("start-up with a large local tier", () => {
  let ferry: FerryProcess | undefined;
  afterAll(async () => ferry?.stop());

  test("listens before the tier is counted, serves from it meanwhile, then evicts under max_size", async () => {
    const maxSize = Math.floor(tier.bytes * 0.95);
    ferry = await startFerry({ cacheDir: tier.dir, cacheConfig: `max_size = ${maxSize}`, config: '[[registry]]\nname = "docker.io"\nendpoints = ["http://127.0.0.1:9"]\n' });
    // Cached manifest and blob, right after the start.
    const manifest = await fetch(`${ferry.url}/v2/library/fixture-3/manifests/v0`, { headers: { accept: OCI_MANIFEST } });
    expect(manifest.status).toBe(200);
    const body = new Uint8Array(await manifest.arrayBuffer());
    expect(manifest.headers.get("docker-content-digest")).toBe(sha256(body));
    const newest = tier.blobs.at(-1)!; // the last eviction would take
    const blob = await fetch(`${ferry.url}/v2/library/fixture-3/blobs/${newest.digest}`);
    expect(blob.status).toBe(200);
    const bytes = new Uint8Array(await blob.arrayBuffer());
    expect(bytes.byteLength).toBe(newest.size);
    expect(sha256(bytes)).toBe(newest.digest);
    // The count completes after the listener is up, and only then does max_size act.
    expect(await ferry.waitForLog('"msg":"cache index loaded"', 30_000)).toBe(true);
    expect(await ferry.waitForLog("evicted least recently used blobs", 30_000)).toBe(true);
    const logs = ferry.logs();
    expect(logs.indexOf('"msg":"ferry listening"')).toBeGreaterThan(-1);
    expect(logs.indexOf('"msg":"ferry listening"')).toBeLessThan(logs.indexOf('"msg":"cache index loaded"'));
    expect(logs).toContain(`"cacheBlobs":${tier.blobs.length},"cacheBytes":${tier.bytes}`);
    const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { cache: { bytes: number; blobs: number } };
    expect(status.cache.bytes).toBeLessThanOrEqual(Math.floor(maxSize * 0.9));
    expect(status.cache.bytes).toBeGreaterThan(maxSize * 0.8);
    // Oldest first: the first blob written is gone, the newest (and just served) stays.
    const layout = new FsBlobStore(tier.dir);
    expect(existsSync(layout.pathOf({ registry: "docker.io", digest: tier.blobs[0]!.digest }))).toBe(false);
    expect(existsSync(layout.pathOf({ registry: "docker.io", digest: newest.digest }))).toBe(true);
  });
});
