// Abuse limits per client IP: requests per minute, bytes per window, concurrent blob
// downloads. Counters live in Redis when it is configured (so replicas share one
// budget) and in memory otherwise, or while Redis is down.
import type { SharedRedis } from "../cache/redis-client.ts";
import type { LimitSettings } from "../config/config.ts";
import { cidrContains, parseCidr, type Cidr } from "../protocol/ip.ts";

export type LimitVerdict = { ok: true } | { ok: false; reason: "requests" | "bytes" | "concurrency"; retryAfterSeconds: number; message: string };

const OK: LimitVerdict = { ok: true };

export class RateLimiter {
  private readonly exempt: Cidr[];
  private readonly local = new Map<string, { count: number; expiresAt: number }>();
  private readonly concurrency = new Map<string, number>();
  private sweepAt = 0;

  constructor(
    private readonly settings: LimitSettings,
    private readonly redis?: SharedRedis,
    private readonly now: () => number = Date.now,
  ) {
    this.exempt = settings.exempt.map((c) => parseCidr(c)!);
  }

  get concurrencyLimited(): boolean {
    return this.settings.concurrentDownloads !== undefined;
  }

  isExempt(ip: string, authenticated: boolean): boolean {
    return (authenticated && this.settings.authenticatedExempt) || this.exempt.some((c) => cidrContains(c, ip));
  }

  /** Counts a request against the per-minute budget. */
  async request(ip: string): Promise<LimitVerdict> {
    const max = this.settings.requestsPerMinute;
    if (max === undefined) return OK;
    const { count, resetsInMs } = await this.add(`req:${ip}`, 1, 60_000);
    if (count <= max) return OK;
    return { ok: false, reason: "requests", retryAfterSeconds: Math.max(1, Math.ceil(resetsInMs / 1000)), message: `too many requests from ${ip}: limit is ${max} per minute` };
  }

  /** Whether the byte budget still has room (checked before a blob is served). */
  async bytesLeft(ip: string): Promise<LimitVerdict> {
    const b = this.settings.bytes;
    if (!b) return OK;
    const { count, resetsInMs } = await this.add(`bytes:${ip}`, 0, b.windowMs);
    if (count < b.limit) return OK;
    return { ok: false, reason: "bytes", retryAfterSeconds: Math.max(1, Math.ceil(resetsInMs / 1000)), message: `download budget of ${ip} used up: limit is ${b.limit} bytes per ${b.windowMs / 1000} s` };
  }

  async addBytes(ip: string, bytes: number): Promise<void> {
    const b = this.settings.bytes;
    if (b && bytes > 0) await this.add(`bytes:${ip}`, bytes, b.windowMs);
  }

  /** Takes a download slot; call the returned release when the body is done. */
  acquireDownload(ip: string): { verdict: LimitVerdict; release: () => void } {
    const max = this.settings.concurrentDownloads;
    if (max === undefined) return { verdict: OK, release: () => {} };
    const current = this.concurrency.get(ip) ?? 0;
    if (current >= max) {
      return { verdict: { ok: false, reason: "concurrency", retryAfterSeconds: 1, message: `too many concurrent downloads from ${ip}: limit is ${max}` }, release: () => {} };
    }
    this.concurrency.set(ip, current + 1);
    let released = false;
    return {
      verdict: OK,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.concurrency.get(ip) ?? 1) - 1;
        if (n <= 0) this.concurrency.delete(ip);
        else this.concurrency.set(ip, n);
      },
    };
  }

  /** Adds to a fixed-window counter; Redis when available, memory otherwise. */
  private async add(name: string, amount: number, windowMs: number): Promise<{ count: number; resetsInMs: number }> {
    const now = this.now();
    const windowStart = Math.floor(now / windowMs) * windowMs;
    const resetsInMs = windowStart + windowMs - now;
    const key = `${name}:${windowStart}`;
    if (this.redis) {
      const redisKey = this.redis.key("limit", key);
      const redis = this.redis;
      const shared = await redis.try(async (c) => {
        const [count] = await redis.multi(c, [
          ["incrby", redisKey, amount],
          ["pexpire", redisKey, windowMs + 1_000],
        ]);
        return count as number;
      });
      if (shared !== undefined) return { count: shared, resetsInMs };
    }
    this.sweep(now);
    const entry = this.local.get(key) ?? { count: 0, expiresAt: windowStart + windowMs };
    entry.count += amount;
    this.local.set(key, entry);
    return { count: entry.count, resetsInMs };
  }

  private sweep(now: number): void {
    if (now < this.sweepAt) return;
    this.sweepAt = now + 10_000;
    for (const [k, v] of this.local) if (v.expiresAt <= now) this.local.delete(k);
  }
}

/** Wraps a body so `done` runs once when it ends, fails or the client goes away. */
export function onStreamEnd(stream: ReadableStream<Uint8Array>, done: (bytesSent: number) => void): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let sent = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done(sent);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            finish();
            controller.close();
            return;
          }
          sent += value.byteLength;
          controller.enqueue(value);
        } catch (error) {
          finish();
          controller.error(error);
        }
      },
      cancel(reason) {
        finish();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
