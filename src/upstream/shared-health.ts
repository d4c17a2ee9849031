// Endpoint cooldowns shared across replicas through Redis: when one replica is told
// "429, retry after 60 s", the others stop asking that endpoint too. Each replica
// publishes its cooldowns and polls the others' once a second (off the request path).
import type { SharedRedis } from "../redis/redis-client.ts";
import type { Endpoint } from "./endpoint.ts";

const POLL_MS = 1_000;

export class SharedHealth {
  private timer: Timer | undefined;

  constructor(
    private readonly redis: SharedRedis,
    private readonly endpoints: () => Endpoint[],
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sync(), POLL_MS);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Publishes our cooldowns and adopts longer ones from other replicas. */
  async sync(): Promise<void> {
    if (!this.redis.ready) return;
    const endpoints = [...new Set(this.endpoints())];
    const keys = endpoints.map((e) => this.redis.key("health", e.url));
    // One GET per endpoint, not an MGET: on a Redis Cluster the keys live in different slots.
    const remote = await Promise.all(keys.map((key) => this.redis.try((c) => c.get(key))));
    const now = Date.now();
    await Promise.all(
      endpoints.map(async (endpoint, i) => {
        if (remote[i] === undefined) return; // Redis did not answer for this key
        const theirs = remote[i] ? (JSON.parse(remote[i]!) as { until: number; reason: "rate-limit" | "failure" }) : undefined;
        if (theirs) endpoint.health.applyRemoteCooldown(theirs.until, theirs.reason);
        const ours = endpoint.health.cooldown();
        if (ours && (!theirs || ours.until > theirs.until)) {
          await this.redis.try((c) => c.set(keys[i]!, JSON.stringify(ours), "PX", Math.max(1, ours.until - now)));
        }
      }),
    );
  }
}
