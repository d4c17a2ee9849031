// Cross-replica single-flight: a lease in Redis names the one replica fetching a given
// blob or manifest from upstream. The holder renews it while working; if it dies, the
// lease expires and another replica takes over. Without Redis (or while it is down)
// every lease is granted: in-process single-flight still holds.
import { randomUUID } from "node:crypto";
import type { SharedRedis } from "./redis-client.ts";

export interface Lease {
  release(): Promise<void>;
}

export interface LockService {
  /** A lease on `name`, or undefined when another replica holds it. */
  acquire(name: string): Promise<Lease | undefined>;
  /** Whether anyone holds `name` now (false when unknown). */
  isHeld(name: string): Promise<boolean>;
}

const NO_OP_LEASE: Lease = { release: async () => {} };

export class LocalLocks implements LockService {
  async acquire(): Promise<Lease> {
    return NO_OP_LEASE;
  }
  async isHeld(): Promise<boolean> {
    return false;
  }
}

// Delete the key only if we still own it (a lease taken over must not be released by the old holder).
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;
const RENEW = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;

export class RedisLocks implements LockService {
  private readonly owner = `${process.pid}-${randomUUID()}`;

  constructor(
    private readonly redis: SharedRedis,
    private readonly leaseMs = 15_000,
  ) {}

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
}
