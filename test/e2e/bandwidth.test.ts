// Issue 19.5, bandwidth caps: an endpoint's max_bandwidth paces blob downloads from it, and
// [limits] bandwidth paces blob bodies to one client, shared by its concurrent downloads;
// manifests are never held up behind them. Rates (X ± 10%) are measured in bench/ (scenario
// 8); these tests assert bytes and coarse lower bounds on time only (a lower bound can't
// pass on an error answer), plus the order of events for manifests. Upstream = real
// distribution (harness).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startFerry } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, hubRegistry, OTHER_REGISTRIES_OFF, sha256 } from "../harness/oci.ts";

const MiB = 1024 * 1024;
let upstream: Upstream;
let big: BuiltImage;
let small: BuiltImage;

beforeAll(async () => {
  upstream = await startUpstream();
  big = await bigLayer({ sizeMiB: 2, seed: "bandwidth" });
  small = await fiveLayer({ seed: "bandwidth" });
  await upstream.push(big, "library/big:latest");
  await upstream.push(small, "library/small:latest");
  await upstream.push(small, "library/small2:latest");
}, 180_000);

afterAll(async () => {
  await upstream?.stop();
});

const layerOf = (image: BuiltImage) => image.manifests[0]!.layers[0]!;

/** GETs a blob, returning its digest and when it finished. */
async function timedBlob(url: string): Promise<{ digest: string; ms: number; endedAt: number }> {
  const started = performance.now();
  const r = await fetch(url);
  expect(r.status).toBe(200);
  const digest = sha256(await r.arrayBuffer());
  return { digest, ms: performance.now() - started, endedAt: performance.now() };
}

async function manifestDoneAt(url: string, expected: string): Promise<number> {
  const r = await fetch(url, { headers: { Accept: ACCEPT } });
  expect(r.status).toBe(200);
  expect(sha256(await r.arrayBuffer())).toBe(expected);
  return performance.now();
}

describe("bandwidth caps", () => {
  test("max_bandwidth on the endpoint: a 2 MiB blob at 1 MiB/s takes ≥ 1.5 s, and a manifest fetched meanwhile is not held up", async () => {
    const ferry = await startFerry({ config: `${OTHER_REGISTRIES_OFF}\n${hubRegistry(upstream.url, 'max_bandwidth = "1MiB/s"')}` });
    try {
      const layer = layerOf(big);
      expect(layer.size).toBeGreaterThan(2 * MiB);
      const blob = timedBlob(`${ferry.url}/v2/library/big/blobs/${layer.digest}`);
      // Uncached, so it goes to the same (capped) endpoint while the blob streams.
      const manifestAt = await manifestDoneAt(`${ferry.url}/v2/library/small/manifests/latest`, small.manifestDigest);
      const b = await blob;
      expect(b.digest).toBe(layer.digest);
      expect(b.ms).toBeGreaterThanOrEqual(1_500);
      expect(manifestAt).toBeLessThan(b.endedAt);
      // Cached now: served intact from disk.
      expect((await timedBlob(`${ferry.url}/v2/library/big/blobs/${layer.digest}`)).digest).toBe(layer.digest);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("[limits] bandwidth per client: one download ≥ 1.5 s for 2 MiB at 1 MiB/s; two at once share it (≥ 3.5 s for both); manifests pass", async () => {
    const ferry = await startFerry({ config: `[limits]\nbandwidth = "1MiB/s"\n${OTHER_REGISTRIES_OFF}\n${hubRegistry(upstream.url)}` });
    try {
      const layer = layerOf(big);
      const url = `${ferry.url}/v2/library/big/blobs/${layer.digest}`;
      const first = await timedBlob(url);
      expect(first.digest).toBe(layer.digest);
      expect(first.ms).toBeGreaterThanOrEqual(1_500);
      const started = performance.now();
      const both = Promise.all([timedBlob(url), timedBlob(url)]);
      const manifestAt = await manifestDoneAt(`${ferry.url}/v2/library/small2/manifests/latest`, small.manifestDigest);
      const [a, b] = await both;
      expect([a.digest, b.digest]).toEqual([layer.digest, layer.digest]);
      expect(Math.max(a.endedAt, b.endedAt) - started).toBeGreaterThanOrEqual(3_500);
      expect(manifestAt).toBeLessThan(Math.min(a.endedAt, b.endedAt));
    } finally {
      await ferry.stop();
    }
  }, 60_000);
});
