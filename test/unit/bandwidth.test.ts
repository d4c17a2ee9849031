// Issue 19.5: the token bucket behind max_bandwidth and [limits] bandwidth. Rates are
// measured in bench/ (scenario 12); here only what can't pass on an error: bytes intact,
// a lower bound on time, and that concurrent transfers take turns.
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { parseRate } from "../../src/config/units.ts";
import { Bandwidth, BandwidthPool } from "../../src/shared/bandwidth.ts";

function source(bytes: number, chunk = 100_000): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= bytes) return c.close();
      const n = Math.min(chunk, bytes - sent);
      c.enqueue(new Uint8Array(n).fill(sent % 251));
      sent += n;
    },
  });
}

describe("bandwidth", () => {
  test("rates in the config", () => {
    expect(parseRate("50MiB/s")).toBe(50 * 1024 ** 2);
    expect(parseRate("1GiB/1m")).toBe(1024 ** 3 / 60);
    expect(parseRate(1000)).toBe(1000);
    expect(parseRate("fast")).toBeUndefined();
    expect(parseRate("0/s")).toBeUndefined();
    const c = parseConfig(`[limits]\nbandwidth = "1MiB/s"\n[[registry]]\nname = "docker.io"\nmax_bandwidth = "50MiB/s"\nendpoints = ["https://registry-1.docker.io", { url = "https://relay.example.com", max_bandwidth = "10MiB/s" }]`);
    expect(c.limits.bandwidth).toBe(1024 ** 2);
    expect(c.registries.find((r) => r.name === "docker.io")!.endpoints.map((e) => e.maxBandwidth)).toEqual([50 * 1024 ** 2, 10 * 1024 ** 2]);
    expect(() => parseConfig(`[limits]\nbandwidth = "lots"`)).toThrow("limits.bandwidth");
  });

  test("a shaped body keeps every byte and takes at least size/rate", async () => {
    const bucket = new Bandwidth(1024 * 1024);
    const started = performance.now();
    const bytes = new Uint8Array(await new Response(bucket.shape(source(1.5 * 1024 * 1024))).arrayBuffer());
    expect(bytes.byteLength).toBe(1.5 * 1024 * 1024);
    expect(bytes[100_000]).toBe(100_000 % 251);
    // 1.5 MiB at 1 MiB/s, less the 64 KiB burst.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_300);
  });

  test("concurrent transfers through one bucket take turns", async () => {
    const bucket = new Bandwidth(2 * 1024 * 1024);
    const order: number[] = [];
    const readAll = async (id: number, body: ReadableStream<Uint8Array>) => {
      const reader = body.getReader();
      for (;;) {
        const { done } = await reader.read();
        if (done) return;
        order.push(id);
      }
    };
    await Promise.all([readAll(1, bucket.shape(source(1024 * 1024, 65536))), readAll(2, bucket.shape(source(1024 * 1024, 65536)))]);
    // Interleaved: neither transfer has more than a few slices in a row once both run.
    const middle = order.slice(4, -4);
    let run = 1;
    let longest = 1;
    for (let i = 1; i < middle.length; i++) longest = Math.max(longest, (run = middle[i] === middle[i - 1] ? run + 1 : 1));
    expect(order.filter((x) => x === 1).length).toBe(16);
    expect(longest).toBeLessThanOrEqual(3);
  });

  test("a pool keeps one bucket per key while its transfers run", async () => {
    const pool = new BandwidthPool(4 * 1024 * 1024);
    const a = pool.shape("10.0.0.1", source(256 * 1024));
    const b = pool.shape("10.0.0.1", source(256 * 1024));
    expect(pool.active).toBe(1);
    await Promise.all([new Response(a).arrayBuffer(), new Response(b).arrayBuffer()]);
    expect(pool.active).toBe(0);
  });
});
