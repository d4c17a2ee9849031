// Issue 5, abuse limits and hostile input: per-client request and byte budgets (shared
// by replicas through Redis), trusted proxies, a bounded fuzz run against a running
// ferry, private-address redirects, TLS, and secrets kept out of logs and answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFerry } from "../harness/ferry.ts";
import { waitFor } from "../harness/proc.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { hubRegistry } from "../harness/oci.ts";

const ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
let upstream: Upstream;
let image: BuiltImage;
const scratch = mkdtempSync(join(tmpdir(), "ferry-limits-"));

const hub = (extra = "") => hubRegistry(upstream.url, extra);

beforeAll(async () => {
  upstream = await startUpstream();
  image = await fiveLayer({ seed: "limits" });
  await upstream.push(image, "library/five:latest");
}, 120_000);

afterAll(async () => {
  await upstream?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/**
 * curl from a chosen loopback source address (a different client, as far as ferry can
 * tell). Async: the upstream harness answers from this same process.
 */
async function curlFrom(source: string, url: string, headers: string[] = []): Promise<{ status: number; retryAfter?: string }> {
  const args = ["curl", "-s", "-m", "10", "-o", "/dev/null", "-D", "-", "--interface", source, ...headers.flatMap((h) => ["-H", h]), url];
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "ignore" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const status = Number(/^HTTP\/[\d.]+ (\d+)/m.exec(out)?.[1] ?? 0);
  const retryAfter = /^retry-after: (\S+)/im.exec(out)?.[1];
  return { status, retryAfter };
}

const sha256 = (bytes: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;

describe("abuse limits", () => {
  test("a client over its request budget gets 429 + Retry-After; another client is unaffected", async () => {
    const ferry = await startFerry({ config: `[limits]\nrequests_per_minute = 10\n${hub()}` });
    try {
      const url = `${ferry.url}/v2/library/five/manifests/latest`;
      const a: { status: number; retryAfter?: string }[] = [];
      for (let i = 0; i < 12; i++) a.push(await curlFrom("127.0.0.2", url));
      expect(a.slice(0, 10).every((r) => r.status === 200)).toBe(true);
      expect(a[10]!.status).toBe(429);
      expect(Number(a[10]!.retryAfter)).toBeGreaterThan(0);
      expect((await curlFrom("127.0.0.3", url)).status).toBe(200);
      const body = await (await fetch(url.replace("127.0.0.1", "127.0.0.1"), { headers: { Accept: ACCEPT } })).text();
      expect(body).toContain("schemaVersion"); // 127.0.0.1 is yet another client
      // X-Forwarded-For from an untrusted peer is ignored: it still counts as 127.0.0.2.
      expect((await curlFrom("127.0.0.2", url, ["X-Forwarded-For: 10.9.9.9"])).status).toBe(429);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("trusted proxies: X-Forwarded-For names the client; exempt ranges have no limit", async () => {
    const ferry = await startFerry({ config: `[limits]\nrequests_per_minute = 3\ntrusted_proxies = ["127.0.0.1/32"]\nexempt = ["10.0.0.0/8"]\n${hub()}` });
    try {
      const get = (xff: string) => fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { "X-Forwarded-For": xff, Accept: ACCEPT } }).then((r) => r.status);
      expect([await get("203.0.113.7"), await get("203.0.113.7"), await get("203.0.113.7"), await get("203.0.113.7")]).toEqual([200, 200, 200, 429]);
      expect(await get("198.51.100.1")).toBe(200);
      // A client can't dodge by prepending its own entry: the right-most untrusted hop counts.
      expect(await get("198.51.100.99, 203.0.113.7")).toBe(429);
      for (let i = 0; i < 6; i++) expect(await get("10.1.2.3")).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("a client over its byte budget gets 429 + Retry-After", async () => {
    const total = image.blobs.reduce((s, b) => s + b.size, 0);
    const ferry = await startFerry({ config: `[limits]\nbytes = "${total}/1h"\n${hub()}` });
    try {
      for (const b of image.blobs) expect((await curlFrom("127.0.0.4", `${ferry.url}/v2/library/five/blobs/${b.digest}`)).status).toBe(200);
      const over = await curlFrom("127.0.0.4", `${ferry.url}/v2/library/five/blobs/${image.blobs[0]!.digest}`);
      expect(over.status).toBe(429);
      expect(Number(over.retryAfter)).toBeGreaterThan(0);
      expect(Number(over.retryAfter)).toBeLessThanOrEqual(3600); // until the hour window ends
      expect((await curlFrom("127.0.0.5", `${ferry.url}/v2/library/five/blobs/${image.blobs[0]!.digest}`)).status).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("with Redis, two replicas share one client's budget", async () => {
    const redis: RedisServer = await startRedis();
    const config = `[redis]\nurl = "${redis.url}"\n[limits]\nrequests_per_minute = 10\n${hub()}`;
    const [a, b] = await Promise.all([startFerry({ config }), startFerry({ config })]);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        statuses.push((await curlFrom("127.0.0.6", `${a.url}/v2/library/five/manifests/latest`)).status);
        statuses.push((await curlFrom("127.0.0.6", `${b.url}/v2/library/five/manifests/latest`)).status);
      }
      expect(statuses.filter((s) => s === 200).length).toBe(10);
      expect(statuses.slice(10)).toEqual([429, 429]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.dispose();
    }
  }, 60_000);

  test("concurrent downloads per client are capped; a finished download frees its slot", async () => {
    const big = await (await import("../harness/images.ts")).bigLayer({ seed: "limits-big", sizeMiB: 16 });
    await upstream.push(big, "library/big:latest");
    const ferry = await startFerry({ config: `[limits]\nconcurrent_downloads = 2\ntrusted_proxies = ["127.0.0.1/32"]\n${hub()}` });
    try {
      const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const url = `${ferry.url}/v2/library/big/blobs/${blob.digest}`;
      const as = (ip: string, signal?: AbortSignal) => fetch(url, { headers: { "X-Forwarded-For": ip }, signal });
      await (await as("192.0.2.1")).arrayBuffer(); // warm the cache
      const holders = [new AbortController(), new AbortController()];
      const open = await Promise.all(holders.map((c) => as("192.0.2.9", c.signal)));
      expect(open.map((r) => r.status)).toEqual([200, 200]);
      const third = await as("192.0.2.9");
      expect(third.status).toBe(429);
      expect(third.headers.get("retry-after")).toBe("1");
      expect((await as("192.0.2.10")).status).toBe(200); // another client is unaffected
      holders[0]!.abort();
      // The slot is freed when ferry notices the client left: wait for that, bounded.
      const again = await waitFor(async () => {
        const r = await as("192.0.2.9");
        if (r.status === 200) return r;
        await r.arrayBuffer();
        return undefined;
      }, { timeoutMs: 10_000, what: "the aborted download's slot to be freed" });
      expect((await again.arrayBuffer()).byteLength).toBe(blob.size);
      holders[1]!.abort();
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("a blob GET that fails (404, 416) gives its concurrent-download slot back", async () => {
    const ferry = await startFerry({ config: `[limits]\nconcurrent_downloads = 1\n${hub()}` });
    try {
      const blob = image.blobs[0]!;
      const missing = `sha256:${"e".repeat(64)}`;
      const url = (digest: string) => `${ferry.url}/v2/library/five/blobs/${digest}`;
      for (let i = 0; i < 3; i++) {
        const r = await fetch(url(missing));
        expect(r.status).toBe(404);
        expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("BLOB_UNKNOWN");
      }
      expect(sha256(await (await fetch(url(blob.digest))).bytes())).toBe(blob.digest); // cached now
      for (let i = 0; i < 3; i++) {
        const r = await fetch(url(blob.digest), { headers: { Range: `bytes=${blob.size + 10}-` } });
        expect(r.status).toBe(416);
        expect(r.headers.get("content-range")).toBe(`bytes */${blob.size}`);
        await r.arrayBuffer();
      }
      const after = await fetch(url(blob.digest));
      expect(after.status).toBe(200);
      expect(sha256(await after.bytes())).toBe(blob.digest);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("a blocked User-Agent is turned away with 403", async () => {
    const ferry = await startFerry({ config: `[limits]\nblock_user_agents = ["masscan", '^Go-http-client/1[.]1$']\n${hub()}` });
    try {
      const as = (ua: string) => fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { "User-Agent": ua, Accept: ACCEPT } });
      const blocked = await as("masscan/1.3 (https://github.com/robertdavidgraham/masscan)");
      expect(blocked.status).toBe(403);
      expect(((await blocked.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("DENIED");
      expect((await as("Go-http-client/1.1")).status).toBe(403);
      expect((await as("docker/20.10.24 go/go1.19.8")).status).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 30_000);

  test("max_concurrent caps upstream requests per endpoint", async () => {
    const ferry = await startFerry({ config: hub('max_concurrent = 1\ntimeout = "2s"') });
    try {
      for (let i = 1; i <= 6; i++) await upstream.push(image, `library/capped:t${i}`);
      upstream.clearLog();
      await upstream.setFault({ kind: "hang", match: /\/manifests\/t1$/, server: "front", times: 1 });
      // t1 holds the only slot (the upstream never answers it); t2 waits for the slot
      // instead of opening a second request, and goes once t1 times out (2 s).
      const stuck = fetch(`${ferry.url}/v2/library/capped/manifests/t1`).then((r) => r.status);
      // t1 has reached the upstream (unanswered: status 0) and holds the slot.
      const t1 = await waitFor(() => upstream.entries({ pathIncludes: "/manifests/t1" }).find((e) => e.status === 0), { what: "t1 to hang upstream" });
      const waiting = fetch(`${ferry.url}/v2/library/capped/manifests/t2`, { headers: { Accept: ACCEPT } }).then((r) => r.status);
      expect(await stuck).toBe(504);
      expect(await waiting).toBe(200);
      // t2 went upstream only once t1 had given the slot back, at its 2 s timeout.
      const t2 = upstream.entries({ pathIncludes: "/manifests/t2" });
      expect(t2.length).toBeGreaterThan(0);
      expect(t2[0]!.time - t1.time).toBeGreaterThanOrEqual(1_900);
    } finally {
      await upstream.setFault(null);
      await ferry.stop();
    }
  }, 120_000);
});
