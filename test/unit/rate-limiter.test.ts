// The per-client limiter without Redis (memory counters), on an injected clock.
import { describe, expect, test } from "bun:test";
import { RateLimiter } from "../../src/access/limits.ts";
import type { LimitSettings } from "../../src/config/config.ts";

const settings = (s: Partial<LimitSettings>): LimitSettings => ({ exempt: [], authenticatedExempt: false, trustedProxies: [], blockUserAgents: [], loginFailures: { limit: 10, windowMs: 15 * 60_000 }, tokenRequestsPerMinute: 120, adminRequestsPerMinute: 300, searchRequestsPerMinute: 60, ipv6Prefix: 64, ...s });

describe("RateLimiter", () => {
  test("concurrency: a slot per download up to the limit; each release frees one, once", () => {
    const limiter = new RateLimiter(settings({ concurrentDownloads: 2 }));
    const a = limiter.acquireDownload("192.0.2.1");
    const b = limiter.acquireDownload("192.0.2.1");
    expect([a.verdict.ok, b.verdict.ok]).toEqual([true, true]);
    const c = limiter.acquireDownload("192.0.2.1");
    expect(c.verdict).toMatchObject({ ok: false, reason: "concurrency", retryAfterSeconds: 1 });
    expect(limiter.acquireDownload("192.0.2.2").verdict.ok).toBe(true); // another client
    c.release(); // a refused slot's release frees nothing
    expect(limiter.acquireDownload("192.0.2.1").verdict.ok).toBe(false);
    a.release();
    a.release(); // twice is once
    expect(limiter.acquireDownload("192.0.2.1").verdict.ok).toBe(true);
    expect(limiter.acquireDownload("192.0.2.1").verdict.ok).toBe(false);
  });

  test("requests per minute: a fixed window; Retry-After is the time until it ends", async () => {
    let now = 60_000 * 1000 + 15_000; // 15 s into a minute
    const limiter = new RateLimiter(settings({ requestsPerMinute: 3 }), undefined, () => now);
    for (let i = 0; i < 3; i++) expect((await limiter.request("192.0.2.1")).ok).toBe(true);
    expect(await limiter.request("192.0.2.1")).toMatchObject({ ok: false, reason: "requests", retryAfterSeconds: 45 });
    expect((await limiter.request("192.0.2.9")).ok).toBe(true);
    now += 44_000;
    expect((await limiter.request("192.0.2.1")).ok).toBe(false);
    now += 1_000; // the next minute
    expect((await limiter.request("192.0.2.1")).ok).toBe(true);
  });

  test("bytes: the budget is checked before a blob and counted after it, per window", async () => {
    let now = 3_600_000 * 10;
    const limiter = new RateLimiter(settings({ bytes: { limit: 1000, windowMs: 3_600_000 } }), undefined, () => now);
    expect((await limiter.bytesLeft("192.0.2.1")).ok).toBe(true);
    await limiter.addBytes("192.0.2.1", 999);
    expect((await limiter.bytesLeft("192.0.2.1")).ok).toBe(true);
    await limiter.addBytes("192.0.2.1", 1);
    expect(await limiter.bytesLeft("192.0.2.1")).toMatchObject({ ok: false, reason: "bytes", retryAfterSeconds: 3600 });
    now += 3_600_000;
    expect((await limiter.bytesLeft("192.0.2.1")).ok).toBe(true);
  });

  test("exempt ranges and authenticated clients", () => {
    const limiter = new RateLimiter(settings({ exempt: ["10.0.0.0/8"], authenticatedExempt: true }));
    expect(limiter.isExempt("10.1.2.3", false)).toBe(true);
    expect(limiter.isExempt("192.0.2.1", false)).toBe(false);
    expect(limiter.isExempt("192.0.2.1", true)).toBe(true);
  });
});
