// Everything a pull needs, wired once: the stores, one Upstream per registry, and the
// manifest/blob/tag services on top of them.
import type { Config, RegistryConfig } from "../config/config.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import { LocalLocks, type LockService } from "../cache/locks.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import type { SharedRedis } from "../cache/redis-client.ts";
import type { Logger } from "../observe/logger.ts";
import { Metrics } from "../observe/metrics.ts";
import { TrafficStats } from "../observe/traffic.ts";
import { TokenCache } from "../upstream/auth.ts";
import { SharedHealth } from "../upstream/shared-health.ts";
import { Upstream } from "../upstream/upstream.ts";
import { BlobService, type SharedBlobTier } from "./blobs.ts";
import { ManifestService } from "./manifests.ts";
import { TagService } from "./tags.ts";

export class Mirror {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  private readonly upstreams = new Map<string, Upstream>();

  private readonly sharedHealth: SharedHealth | undefined;
  readonly metrics: Metrics;
  readonly traffic: TrafficStats;
  readonly redis: SharedRedis | undefined;
  readonly sharedBlobs: SharedBlobTier | undefined;
  /** Cross-replica leases; their token also admits a peer to our downloads. */
  readonly locks: LockService;

  constructor(
    readonly config: Config,
    readonly meta: MetaStore,
    readonly blobStore: FsBlobStore,
    readonly log: Logger,
    shared: { redis?: SharedRedis; blobs?: SharedBlobTier; locks?: LockService; metrics?: Metrics; traffic?: TrafficStats } = {},
  ) {
    this.redis = shared.redis;
    this.sharedBlobs = shared.blobs;
    this.traffic = shared.traffic ?? new TrafficStats();
    this.metrics = shared.metrics ?? new Metrics({
      inFlightDownloads: () => this.blobs.inFlight.size,
      cacheBytes: () => blobStore.usage.size,
      cacheBlobs: () => blobStore.usage.count,
      cacheMaxBytes: config.cache.maxSize,
    });
    const tokens = new TokenCache(shared.redis);
    const locks = (this.locks = shared.locks ?? new LocalLocks());
    for (const registry of config.registries) this.upstreams.set(registry.name, new Upstream(registry, tokens, log, this.metrics));
    const upstreamFor = (name: string) => this.upstreamFor(name);
    this.manifests = new ManifestService(meta, locks, upstreamFor, config.cache.tagTtlMs, config.cache.negativeTtlMs, log);
    this.blobs = new BlobService(blobStore, shared.blobs, locks, upstreamFor, log);
    this.tags = new TagService(meta, upstreamFor, config.cache.tagTtlMs, log);
    if (shared.redis) {
      this.sharedHealth = new SharedHealth(shared.redis, () => [...this.upstreams.values()].flatMap((u) => [...u.endpoints, ...u.blobEndpoints]));
      this.sharedHealth.start();
    }
  }

  /** Cached repositories with their tags, digests, image sizes and last pull (for the dashboard). */
  async cachedRepositories(): Promise<{ registry: string; repository: string; tags: { tag: string; digest: string; mediaType: string; size: number | null; checkedAt: string; pulledAt: string | null }[] }[]> {
    const repos = await this.meta.listRepositories();
    return Promise.all(
      repos.map(async (repo) => {
        const tags = await this.meta.listTags(repo);
        const details = await Promise.all(
          tags.map(async (tag) => {
            const record = await this.meta.getTag(repo, tag);
            if (!record) return undefined;
            const manifest = await this.meta.getManifest(repo, record.digest);
            return {
              tag,
              digest: record.digest,
              mediaType: record.mediaType,
              size: manifest ? imageSize(manifest.body) : null,
              checkedAt: new Date(record.checkedAt).toISOString(),
              pulledAt: record.pulledAt ? new Date(record.pulledAt).toISOString() : null,
            };
          }),
        );
        return { ...repo, tags: details.filter((d) => d !== undefined) };
      }),
    );
  }

  /** What /readyz reports: config loaded (we exist), cache dir writable, Redis and S3 reachable. */
  async readiness(): Promise<Record<string, { ok: boolean; error?: string }>> {
    const checks: Record<string, { ok: boolean; error?: string }> = { config: { ok: true }, cache: await this.blobStore.checkWritable() };
    if (this.redis) checks.redis = this.redis.ready ? { ok: true } : { ok: false, error: "not connected" };
    if (this.sharedBlobs) {
      try {
        await this.sharedBlobs.store.stat({ registry: "ferry-readiness", digest: `sha256:${"0".repeat(64)}` });
        checks.s3 = { ok: true };
      } catch (error) {
        checks.s3 = { ok: false, error: (error as Error).message };
      }
    }
    return checks;
  }

  close(): void {
    this.sharedHealth?.stop();
  }

  upstreamFor(name: string): Upstream {
    const upstream = this.upstreams.get(name);
    if (!upstream) throw new Error(`no upstream for registry ${name}`);
    return upstream;
  }

  /** Each registry's tiers and their health, for the status API. */
  upstreamStatus() {
    return this.config.registries.map((r) => ({ registry: r.name, endpoints: this.upstreams.get(r.name)!.status() }));
  }

  get registries(): readonly RegistryConfig[] {
    return this.config.registries;
  }
}

/** Config plus layer sizes of an image manifest; null for an index (its size is per platform). */
function imageSize(body: Uint8Array): number | null {
  try {
    const m = JSON.parse(new TextDecoder().decode(body)) as { config?: { size?: number }; layers?: { size?: number }[] };
    if (!Array.isArray(m.layers)) return null;
    return (m.config?.size ?? 0) + m.layers.reduce((sum, l) => sum + (l.size ?? 0), 0);
  } catch {
    return null;
  }
}
