// Abuse limits per client IP: requests per minute, bytes per window, concurrent blob
// downloads, failed logins, and budgets of their own for /token, the operator pages and
// /v1/*. IPv6 clients count per prefix (ipv6_prefix, a /64 by default). Counters live in
// Redis when it is configured (so replicas share one budget) and in memory otherwise, or
// while Redis is down.
import { LRUCache } from "lru-cache";
import type { SharedRedis } from "../redis/redis-client.ts";
import type { LimitSettings } from "../config/config.ts";
import { cidrContains, ipToBigInt, parseCidr, type Cidr } from "../protocol/ip.ts";

export type LimitVerdict = { ok: true } | { ok: false; reason: "requests" | "bytes" | "concurrency" | "logins"; retryAfterSeconds: number; message: string };

/** Paths outside /v2/ with a per-minute budget of their own. */
export type PageBudget = "token" | "admin" | "search";

const OK: LimitVerdict = { ok: true };

/** The in-memory counters; they outlive a config reload (the limiter is rebuilt, the counts go on). */
export class LimiterCounters {
  // Bounded: a flood of new addresses or user names evicts the oldest counters instead of filling memory.
  readonly windows = new LRUCache<string, { count: number; expiresAt: number }>({ max: 100_000 });
  readonly downloads = new Map<string, number>();
}

export class RateLimiter {
  private readonly exempt: Cidr[];
  private readonly local: LimiterCounters["windows"];
  private readonly concurrency: LimiterCounters["downloads"];
  private sweepAt = 0;

  constructor(
    private readonly settings: LimitSettings,
    private readonly redis?: SharedRedis,
    private readonly now: () => number = Date.now,
    counters: LimiterCounters = new LimiterCounters(),
  ) {
    this.exempt = settings.exempt.map((c) => parseCidr(c)!);
    this.local = counters.windows;
    this.concurrency = counters.downloads;
  }

  get concurrencyLimited(): boolean {
    return this.settings.concurrentDownloads !== undefined;
  }

  /** `verified`: a login checked by ferry (htpasswd, static token, a token ferry issued), never merely claimed. */
  isExempt(ip: string, verified: boolean): boolean {
    return (verified && this.settings.authenticatedExempt) || this.isExemptAddress(ip);
  }

  isExemptAddress(ip: string): boolean {
    return this.exempt.some((c) => cidrContains(c, ip));
  }

  /**
   * Who a budget belongs to: the address, or for IPv6 its ipv6_prefix (a /64 by default),
   * since one site holds a whole /64 and could otherwise take a fresh budget per address.
   */
  clientKey(ip: string): string {
    const prefix = this.settings.ipv6Prefix;
    const n = ipToBigInt(ip);
    if (n === undefined || n >> 32n === 0xffffn || prefix >= 128) return ip;
    const masked = (n >> BigInt(128 - prefix)) << BigInt(128 - prefix);
    const groups = Array.from({ length: 8 }, (_, i) => ((masked >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
    return `${groups.join(":")}/${prefix}`;
  }

  /** Counts a request against the per-minute budget of the registry API, or of a page group. */
  async request(ip: string, budget?: PageBudget): Promise<LimitVerdict> {
    const s = this.settings;
    const max = budget === "token" ? s.tokenRequestsPerMinute : budget === "admin" ? s.adminRequestsPerMinute : budget === "search" ? s.searchRequestsPerMinute : s.requestsPerMinute;
    if (max === undefined) return OK;
    const who = this.clientKey(ip);
    const { count, resetsInMs } = await this.add(`req:${budget ?? "v2"}:${who}`, 1, 60_000);
    if (count <= max) return OK;
    return { ok: false, reason: "requests", retryAfterSeconds: Math.max(1, Math.ceil(resetsInMs / 1000)), message: `too many requests from ${who}: limit is ${max} per minute${budget ? ` for ${budget} requests` : ""}` };
  }

  /** Whether this client may try a password for this user name now (checked before any hashing). */
  async loginAllowed(ip: string, username: string): Promise<LimitVerdict> {
    const { limit, windowMs } = this.settings.loginFailures;
    const who = this.clientKey(ip);
    for (const [key, what] of [[`fail:ip:${who}`, `from ${who}`], [`fail:user:${userKey(username)}`, "for this user name"]] as const) {
      const { count, resetsInMs } = await this.addFromFirst(key, 0, windowMs);
      if (count >= limit) {
        return { ok: false, reason: "logins", retryAfterSeconds: Math.max(1, Math.ceil(resetsInMs / 1000)), message: `too many failed logins ${what}: try again later` };
      }
    }
    return OK;
  }

  async loginFailed(ip: string, username: string): Promise<void> {
    const { windowMs } = this.settings.loginFailures;
    await Promise.all([this.addFromFirst(`fail:ip:${this.clientKey(ip)}`, 1, windowMs), this.addFromFirst(`fail:user:${userKey(username)}`, 1, windowMs)]);
  }

  /** Whether the byte budget still has room (checked before a blob is served). */
  async bytesLeft(ip: string): Promise<LimitVerdict> {
    const b = this.settings.bytes;
    if (!b) return OK;
    const who = this.clientKey(ip);
    const { count, resetsInMs } = await this.add(`bytes:${who}`, 0, b.windowMs);
    if (count < b.limit) return OK;
    return { ok: false, reason: "bytes", retryAfterSeconds: Math.max(1, Math.ceil(resetsInMs / 1000)), message: `download budget of ${who} used up: limit is ${b.limit} bytes per ${b.windowMs / 1000} s` };
  }

  async addBytes(ip: string, bytes: number): Promise<void> {
    const b = this.settings.bytes;
    if (b && bytes > 0) await this.add(`bytes:${this.clientKey(ip)}`, bytes, b.windowMs);
  }

  /** Takes a download slot; call the returned release when the body is done. */
  acquireDownload(address: string): { verdict: LimitVerdict; release: () => void } {
    const max = this.settings.concurrentDownloads;
    if (max === undefined) return { verdict: OK, release: () => {} };
    const ip = this.clientKey(address);
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

  /**
   * A counter whose window starts at its first count (failed logins): a guesser can't get a
   * fresh budget at a clock boundary, and a back-off lasts a whole window.
   */
  private async addFromFirst(name: string, amount: number, windowMs: number): Promise<{ count: number; resetsInMs: number }> {
    const now = this.now();
    if (this.redis) {
      const redisKey = this.redis.key("limit", name);
      const shared = await this.redis.try(async (c) => {
        if (amount === 0) {
          const [[, count], [, ttl]] = (await c.multi().get(redisKey).pttl(redisKey).exec()) as [[Error | null, string | null], [Error | null, number]];
          return { count: Number(count ?? 0), resetsInMs: Math.max(0, ttl) };
        }
        const replies = (await c.multi().set(redisKey, 0, "PX", windowMs, "NX").incrby(redisKey, amount).pttl(redisKey).exec()) as [Error | null, unknown][];
        return { count: Number(replies[1]![1]), resetsInMs: Math.max(0, Number(replies[2]![1])) };
      });
      if (shared !== undefined) return shared;
    }
    this.sweep(now);
    const live = this.local.get(name);
    const entry = live && live.expiresAt > now ? live : { count: 0, expiresAt: now + windowMs };
    if (amount === 0) return { count: entry.count, resetsInMs: entry.expiresAt - now }; // a look, not a count
    entry.count += amount;
    this.local.set(name, entry);
    return { count: entry.count, resetsInMs: entry.expiresAt - now };
  }

  private sweep(now: number): void {
    if (now < this.sweepAt) return;
    this.sweepAt = now + 10_000;
    for (const [k, v] of this.local) if (v.expiresAt <= now) this.local.delete(k);
  }
}

/** User names are client input: hashed, so a key has a bounded length and no odd bytes. */
function userKey(username: string): string {
  return new Bun.CryptoHasher("sha256").update(username).digest("hex").slice(0, 32);
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
