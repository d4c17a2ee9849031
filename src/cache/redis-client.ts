// The Redis connection shared by the metadata store, locks, tokens and health. Commands
// fail fast while Redis is down (no offline queue), so every caller can fall back to
// per-process state; the outage is logged once and the return once.
import Redis, { Cluster, type RedisOptions } from "ioredis";
import type { Logger } from "../observe/logger.ts";

export interface RedisConfig {
  url?: string; // redis:// or rediss://
  sentinels?: string[]; // "host:port", with sentinelName
  sentinelName?: string;
  clusterNodes?: string[]; // "host:port"
  keyPrefix: string;
}

export type RedisConnection = Redis | Cluster;

export class SharedRedis {
  readonly client: RedisConnection;
  readonly prefix: string;
  private down = false;

  constructor(config: RedisConfig, private readonly log: Logger) {
    this.prefix = config.keyPrefix;
    const common: RedisOptions = {
      lazyConnect: false,
      enableOfflineQueue: false, // a command while disconnected fails now instead of waiting
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: 1_000,
      retryStrategy: (times) => Math.min(200 * times, 2_000), // keep reconnecting, gently
    };
    const hostPort = (s: string) => {
      const [host = "127.0.0.1", port = "6379"] = s.split(/:(?=\d+$)/);
      return { host, port: Number(port) };
    };
    if (config.clusterNodes?.length) {
      this.client = new Cluster(config.clusterNodes.map(hostPort), { redisOptions: common, enableOfflineQueue: false });
    } else if (config.sentinels?.length) {
      this.client = new Redis({ ...common, sentinels: config.sentinels.map(hostPort), name: config.sentinelName ?? "mymaster" });
    } else {
      this.client = new Redis(config.url ?? "redis://127.0.0.1:6379", common);
    }
    this.client.on("error", () => this.markDown());
    this.client.on("ready", () => {
      if (this.down) log.info("redis is back; shared state resumes");
      this.down = false;
    });
  }

  /** Resolves when connected, or after `timeoutMs` (an unreachable Redis never blocks start-up). */
  async waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return true;
    return Promise.race([
      new Promise<boolean>((resolve) => this.client.once("ready", () => resolve(true))),
      Bun.sleep(timeoutMs).then(() => this.ready),
    ]);
  }

  get ready(): boolean {
    return this.client.status === "ready";
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }

  /** Runs a command; undefined (and one warning per outage) when Redis is unavailable. */
  async try<T>(command: (client: RedisConnection) => Promise<T>): Promise<T | undefined> {
    if (!this.ready) {
      this.markDown();
      return undefined;
    }
    try {
      return await command(this.client);
    } catch (error) {
      this.markDown(error as Error);
      return undefined;
    }
  }

  private markDown(error?: Error): void {
    if (this.down) return;
    this.down = true;
    this.log.warn({ error: error?.message }, "redis unavailable; continuing with per-process state");
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
