import { describe, expect, test } from "bun:test";
import { MemoryLimit } from "../../src/shared/memory-limit.ts";

const MiB = 1024 * 1024;

/** A clock and an RSS the test moves; a collection takes `gcMs` and brings RSS to `afterGc`. */
function fake(o: { rss: number; gcMs: number; afterGc: number }) {
  const s = { now: 0, rss: o.rss, collected: 0, transfers: false };
  const limit = new MemoryLimit(160 * MiB, {
    now: () => s.now,
    rss: () => s.rss,
    transfers: () => s.transfers,
    collect: () => {
      s.collected++;
      s.now += o.gcMs;
      s.rss = o.afterGc;
    },
  });
  return { s, limit };
}

describe("memory limit", () => {
  test("collects only while RSS is over the limit", () => {
    const { s, limit } = fake({ rss: 150 * MiB, gcMs: 10, afterGc: 100 * MiB });
    expect(limit.check()).toBe(false);
    s.rss = 161 * MiB;
    expect(limit.check()).toBe(true);
    expect(s.rss).toBe(100 * MiB);
    s.now += 1_000;
    expect(limit.check()).toBe(false);
    expect(limit.collections).toBe(1);
  });

  test("a live set above the limit costs at most 5% of the time, and never a collection within 200 ms", () => {
    // RSS stays over the limit after each collection: the collections must back off.
    const { s, limit } = fake({ rss: 300 * MiB, gcMs: 30, afterGc: 300 * MiB });
    for (let t = 0; t <= 60_000; t += 50) {
      s.now = Math.max(s.now, t);
      limit.check();
    }
    // 30 ms each, ≥ 600 ms apart: about 100 in 60 s, 3 s of collecting (5%).
    expect(s.collected).toBeGreaterThan(90);
    expect(s.collected).toBeLessThanOrEqual(101);
    const cheap = fake({ rss: 300 * MiB, gcMs: 1, afterGc: 300 * MiB });
    for (let t = 0; t <= 10_000; t += 50) {
      cheap.s.now = Math.max(cheap.s.now, t);
      cheap.limit.check();
    }
    expect(cheap.s.collected).toBe(51); // every 200 ms from 0 to 10 s
  });

  test("waits while blob transfers run (their own collections bound memory then)", () => {
    const { s, limit } = fake({ rss: 300 * MiB, gcMs: 1, afterGc: 100 * MiB });
    s.transfers = true;
    expect(limit.check()).toBe(false);
    s.transfers = false;
    expect(limit.check()).toBe(true);
  });

  test("0 turns it off; a reload's new limit applies at the next check", () => {
    const { s, limit } = fake({ rss: 500 * MiB, gcMs: 1, afterGc: 500 * MiB });
    limit.limitBytes = 0;
    expect(limit.check()).toBe(false);
    limit.limitBytes = 400 * MiB;
    expect(limit.check()).toBe(true);
    expect(s.collected).toBe(1);
  });

  test("with the real runtime: an RSS over the limit is collected and returned to the kernel", () => {
    // Garbage that the allocator would otherwise keep: 64 MiB of buffers, then dropped.
    let junk: Uint8Array[] | undefined = Array.from({ length: 64 }, (_, i) => new Uint8Array(MiB).fill(i));
    const before = process.memoryUsage.rss();
    expect(junk.length).toBe(64);
    junk = undefined;
    const limit = new MemoryLimit(before - 32 * MiB);
    expect(limit.check()).toBe(true);
    expect(process.memoryUsage.rss()).toBeLessThan(before - 32 * MiB);
  });
});
