// Issue 6, machine interfaces: /metrics (Prometheus), /healthz, /readyz and the JSON
// status API, after real pulls from a real upstream.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT } from "../harness/oci.ts";

let upstream: Upstream;
let ferry: FerryProcess;
let image: BuiltImage;

beforeAll(async () => {
  upstream = await startUpstream();
  image = await fiveLayer({ seed: "observability" });
  await upstream.push(image, "library/watched:1.0");
  ferry = await startFerry({ config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n` });
  // Pull the image twice: misses, then hits.
  for (let round = 0; round < 2; round++) {
    await fetch(`${ferry.url}/v2/library/watched/manifests/1.0`, { headers: { Accept: ACCEPT } }).then((r) => r.arrayBuffer());
    for (const b of image.blobs) await fetch(`${ferry.url}/v2/library/watched/blobs/${b.digest}`).then((r) => r.arrayBuffer());
  }
}, 120_000);

afterAll(async () => {
  await ferry?.stop();
  await upstream?.stop();
});

describe("machine interfaces", () => {
  test("/metrics speaks Prometheus and counts what happened", async () => {
    const r = await fetch(`${ferry.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain");
    const text = await r.text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    const totalBlobBytes = image.blobs.reduce((s, b) => s + b.size, 0);
    expect(value(/^ferry_bytes_served_total\{source="upstream"\} (\d+)$/m)).toBe(totalBlobBytes);
    expect(value(/^ferry_bytes_served_total\{source="local"\} (\d+)$/m)).toBe(totalBlobBytes);
    expect(value(/^ferry_cache_results_total\{kind="blob",result="hit",tier="local"\} (\d+)$/m)).toBe(image.blobs.length);
    expect(value(/^ferry_cache_results_total\{kind="manifest",result="miss",tier="upstream"\} (\d+)$/m)).toBe(1);
    expect(value(/^ferry_cache_results_total\{kind="manifest",result="hit",tier="local"\} (\d+)$/m)).toBe(1);
    expect(text).toMatch(/^ferry_http_requests_total\{route="blob",method="GET",status="200"\} \d+$/m);
    // Requests are tallied between scrapes: the counter and the histogram agree.
    const blobRequests = value(/^ferry_http_requests_total\{route="blob",method="GET",status="200"\} (\d+)$/m);
    expect(blobRequests).toBeGreaterThanOrEqual(2 * image.blobs.length);
    expect(value(/^ferry_http_request_duration_seconds_count\{route="blob"\} (\d+)$/m)).toBeGreaterThanOrEqual(blobRequests);
    expect(text).toMatch(/^ferry_upstream_request_duration_seconds_bucket\{le="[^"]+",registry="docker.io",endpoint="http:\/\/127\.0\.0\.1:\d+",method="GET"\} \d+$/m);
    expect(value(/^ferry_cache_size_bytes (\d+)$/m)).toBe(totalBlobBytes);
    expect(text).toMatch(/^ferry_inflight_downloads 0$/m);
    expect(text).toContain("ferry_process_resident_memory_bytes");
  });

  test("server.memory_limit: over it, ferry collects (counted in /metrics) and serves on", async () => {
    const collections = async (f: FerryProcess) => Number(/^ferry_memory_limit_collections_total (\d+)$/m.exec(await (await fetch(`${f.url}/metrics`)).text())?.[1] ?? NaN);
    // The default limit (176 MiB) is far above a ferry at rest; 1 MiB is below any.
    expect(await collections(ferry)).toBe(0);
    const tight = await startFerry({ server: `memory_limit = "1MiB"`, config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n` });
    try {
      const first = await waitFor(async () => ((await collections(tight)) >= 1 ? collections(tight) : 0), { timeoutMs: 10_000, what: "a collection over the limit" });
      const blob = image.blobs[0]!;
      const r = await fetch(`${tight.url}/v2/library/watched/blobs/${blob.digest}`);
      expect(r.status).toBe(200);
      expect(new Bun.CryptoHasher("sha256").update(await r.arrayBuffer()).digest("hex")).toBe(blob.digest.slice("sha256:".length));
      // Still over the limit: collections go on, each ≥ 200 ms after the last.
      const t0 = Date.now();
      const later = await waitFor(async () => ((await collections(tight)) >= first + 2 ? collections(tight) : 0), { timeoutMs: 10_000, what: "two more collections" });
      expect(later).toBeGreaterThanOrEqual(first + 2);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    } finally {
      await tight.stop();
    }
  });

  test("/healthz and /readyz", async () => {
    expect((await fetch(`${ferry.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${ferry.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, checks: { config: { ok: true }, cache: { ok: true } } });
  });

  test("/readyz is 503 while a configured Redis is unreachable (and ferry still serves)", async () => {
    const port = await freePort();
    const degraded = await startFerry({ config: `[redis]\nurl = "redis://127.0.0.1:${port}"\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n` });
    try {
      const r = await fetch(`${degraded.url}/readyz`);
      expect(r.status).toBe(503);
      const body = (await r.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> };
      expect(body.checks.redis!.ok).toBe(false);
      const m = await fetch(`${degraded.url}/v2/library/watched/manifests/1.0`, { headers: { Accept: ACCEPT } });
      expect(m.headers.get("docker-content-digest")).toBe(image.manifestDigest);
    } finally {
      await degraded.stop();
    }
  });

  test("/api/status and /api/repositories feed the dashboard", async () => {
    const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as {
      version: string;
      registries: { registry: string; endpoints: { url: string; state: string }[] }[];
      cache: { bytes: number; blobs: number };
      traffic: { hits: number; misses: number; hitRatio: number; bytesFromCache: number; series: { hits: number }[] };
    };
    expect(status.registries.find((r) => r.registry === "docker.io")!.endpoints[0]).toMatchObject({ url: upstream.url, state: "closed" });
    expect(status.cache.blobs).toBe(image.blobs.length);
    expect(status.traffic).toMatchObject({ hits: image.blobs.length, misses: image.blobs.length, hitRatio: 0.5 });
    expect(status.traffic.series.reduce((s, p) => s + p.hits, 0)).toBe(image.blobs.length);
    expect(JSON.stringify(status)).not.toMatch(/password|secret|token/i);
    const repos = (await (await fetch(`${ferry.url}/api/repositories`)).json()) as { repositories: { registry: string; repository: string; tags: { tag: string; digest: string; size: number; pulledAt: string | null }[] }[] };
    const watched = repos.repositories.find((r) => r.repository === "library/watched")!;
    expect(watched.registry).toBe("docker.io");
    expect(watched.tags[0]).toMatchObject({ tag: "1.0", digest: image.manifestDigest, size: image.blobs.reduce((s, b) => s + b.size, 0) });
    expect(watched.tags[0]!.pulledAt).not.toBeNull();
  });
});
