// Cross-replica single-flight: a lease in Redis names the one replica fetching a given
// blob or manifest from upstream. The holder renews it while working; if it dies, the
// lease expires and another replica takes over. Without Redis (or while it is down)
// every lease is granted: in-process single-flight still holds. The lease value names
// the holder's peer URL and a token, so a replica waiting for the holder's download can
// stream it from the holder (registry/peer-blobs.ts) instead of waiting in silence.
import { randomUUID, timingSafeEqual } from "node:crypto";
import type { SharedRedis } from "../redis/redis-client.ts";

export interface Lease {
  release(): Promise<void>;
}

/** Another replica holding a lease: where it serves peers, and the token it accepts. */
export interface LeaseHolder {
  peerUrl: string;
  token: string;
}

export interface LockService {
  /** A lease on `name`, or undefined when another replica holds it. */
  acquire(name: string): Promise<Lease | undefined>;
  /** Whether anyone holds `name` now (false when unknown). */
  isHeld(name: string): Promise<boolean>;
  /** The other replica holding `name`, when it published a peer URL (undefined when unknown, free, or ours). */
  holder(name: string): Promise<LeaseHolder | undefined>;
  /** Whether `token` is the one this replica's leases carry (a peer asking for our download). */
  ownsToken(token: string): boolean;
  readonly leaseMs: number;
}

const NO_OP_LEASE: Lease = { release: async () => {} };

export class LocalLocks implements LockService {
  async acquire(): Promise<Lease> {
    return NO_OP_LEASE;
  }
  async isHeld(): Promise<boolean> {
    return false;
  }
  async holder(): Promise<undefined> {
    return undefined;
  }
  ownsToken(): boolean {
    return false;
  }
  readonly leaseMs = 0;
}

// Delete the key only if we still own it (a lease taken over must not be released by the old holder).
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;
const RENEW = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;

export class RedisLocks implements LockService {
  private readonly token = randomUUID();
  /** What our leases hold: compared whole on renew and release. */
  private readonly owner: string;

  constructor(
    private readonly redis: SharedRedis,
    readonly leaseMs = 15_000,
    peerUrl?: string,
  ) {
    this.owner = JSON.stringify({ pid: process.pid, token: this.token, peerUrl });
  }

  async acquire(name: string): Promise<Lease | undefined> {
    const key = this.redis.key("lock", name);
    const result = await this.redis.try((c) => c.set(key, this.owner, "PX", this.leaseMs, "NX"));
    if (result === undefined) return NO_OP_LEASE; // Redis down: degrade to in-process
    if (result !== "OK") return undefined;
    const timer = setInterval(() => {
      void this.redis.try((c) => c.eval(RENEW, 1, key, this.owner, this.leaseMs));
    }, this.leaseMs / 3);
    timer.unref?.();
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await this.redis.try((c) => c.eval(RELEASE, 1, key, this.owner));
      },
    };
  }

  async isHeld(name: string): Promise<boolean> {
    return (await this.redis.try((c) => c.exists(this.redis.key("lock", name)))) === 1;
  }

  async holder(name: string): Promise<LeaseHolder | undefined> {
    const value = await this.redis.try((c) => c.get(this.redis.key("lock", name)));
    if (!value || value === this.owner) return undefined;
    try {
      const { token, peerUrl } = JSON.parse(value) as { token?: unknown; peerUrl?: unknown };
      return typeof token === "string" && typeof peerUrl === "string" ? { token, peerUrl } : undefined;
    } catch {
      return undefined; // a lease written by an older replica: no peer to ask
    }
  }

  ownsToken(token: string): boolean {
    const theirs = Buffer.from(token);
    const ours = Buffer.from(this.token);
    return theirs.length === ours.length && timingSafeEqual(theirs, ours);
  }
}
