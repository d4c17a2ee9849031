// The Redis connection shared by the metadata store, locks, tokens and health. Commands
// fail fast while Redis is down (no offline queue), so every caller can fall back to
// per-process state; the outage is logged once and the return once. A command Redis
// refuses (WRONGTYPE, CROSSSLOT, OOM...) is no outage: it is logged as that command's error.
import Redis, { Cluster, ReplyError, type RedisOptions } from "ioredis";
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
      connectionName: "ferry", // CLIENT LIST shows which connections are ferry's
      enableOfflineQueue: false, // a command while disconnected fails now instead of waiting
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: 1_000,
      retryStrategy: (times) => Math.min(200 * times, 2_000), // keep reconnecting, gently
      // A master demoted by a failover answers writes with READONLY: reconnect to the new one.
      reconnectOnError: (error) => error.message.startsWith("READONLY"),
    };
    const hostPort = (s: string) => {
      const [host = "127.0.0.1", port = "6379"] = s.split(/:(?=\d+$)/);
      return { host, port: Number(port) };
    };
    if (config.clusterNodes?.length) {
      this.client = new Cluster(config.clusterNodes.map(hostPort), { redisOptions: common, enableOfflineQueue: false });
    } else if (config.sentinels?.length) {
      // failoverDetector: follow Sentinel's +switch-master at once instead of on the next error.
      this.client = new Redis({ ...common, sentinels: config.sentinels.map(hostPort), name: config.sentinelName ?? "mymaster", failoverDetector: true });
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

  /**
   * Runs a command; undefined when Redis is unavailable (one warning per outage) or
   * refused the command (a warning naming the command and Redis's answer).
   */
  async try<T>(command: (client: RedisConnection) => Promise<T>): Promise<T | undefined> {
    if (!this.ready) {
      this.markDown();
      return undefined;
    }
    try {
      return await command(this.client);
    } catch (error) {
      if (isCommandError(error)) this.log.warn({ command: commandName(error), error: (error as Error).message }, "redis command failed");
      else this.markDown(error as Error);
      return undefined;
    }
  }

  /**
   * A MULTI of `commands` (on a Cluster all their keys must share a hash slot); throws the
   * first failed command's error, named, where ioredis resolves exec() with it instead.
   */
  async multi(client: RedisConnection, commands: [name: string, ...args: (string | number | Buffer)[]][]): Promise<unknown[]> {
    const results = (await client.multi(commands).exec()) ?? [];
    for (const [i, [error]] of results.entries()) {
      if (error) throw Object.assign(error, { command: { name: commands[i]![0] } });
    }
    return results.map(([, value]) => value);
  }

  private markDown(error?: Error): void {
    if (this.down) return;
    this.down = true;
    this.log.warn({ error: error?.message }, "redis unavailable; continuing with per-process state");
  }

  /** Every master (one for a single Redis or Sentinel), e.g. for a SCAN over all keys. */
  masters(): Redis[] {
    return this.client instanceof Cluster ? this.client.nodes("master") : [this.client];
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

/** Redis answered and refused this command; the connection and the data are fine. */
function isCommandError(error: unknown): boolean {
  const message = (error as Error)?.message ?? "";
  // Availability answers: the node is loading, failing over or has lost its slots.
  if (/^(CLUSTERDOWN|LOADING|MASTERDOWN|TRYAGAIN|READONLY|NOREPLICAS)/.test(message)) return false;
  // ioredis's own refusal of a batch that spans hash slots on a Cluster.
  return error instanceof ReplyError || /same slot/i.test(message);
}

function commandName(error: unknown): string | undefined {
  return (error as { command?: { name?: string } }).command?.name;
}
