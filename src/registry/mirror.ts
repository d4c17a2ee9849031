// Everything a pull needs, wired once: the stores, one Upstream per registry, and the
// manifest/blob/tag services on top of them.
import type { Config, RegistryConfig } from "../config/config.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import { LocalLocks, type LockService } from "../cache/locks.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import type { SharedRedis } from "../redis/redis-client.ts";
import type { Logger } from "../observe/logger.ts";
import { Metrics } from "../observe/metrics.ts";
import { TrafficStats } from "../observe/traffic.ts";
import { TokenCache } from "../upstream/auth.ts";
import type { EndpointHealth } from "../upstream/health.ts";
import { SharedHealth } from "../upstream/shared-health.ts";
import { Upstream, type EndpointStatus } from "../upstream/upstream.ts";
import { RegistryClient } from "../upstream/registry-client.ts";
import type { Credentials } from "../upstream/auth.ts";
import { BlobMembership } from "./blob-membership.ts";
import { DownloadSlots, type BlobDownload } from "./blob-download.ts";
import { BlobService, type SharedBlobTier } from "./blobs.ts";
import { ManifestService } from "./manifests.ts";
import { ReferrersService } from "./referrers.ts";
import { TagPolicy } from "./tag-policy.ts";
import { TagService } from "./tags.ts";

/** A cached repository with its tags, for the dashboard. */
export interface CachedRepository {
  registry: string;
  repository: string;
  tags: { tag: string; digest: string; mediaType: string; size: number | null; checkedAt: string; pulledAt: string | null; policy: { immutable: boolean; ttlSeconds: number | null; rule: string } }[];
}

/** One registry's tiers and their health, and how often a stale copy was served. */
export interface RegistryStatus {
  registry: string;
  endpoints: EndpointStatus[];
  staleResponses: Record<string, number>;
}

/**
 * What one Mirror hands to the next on a config reload (serve.ts keeps it): upstream
 * tokens, endpoint health (cooldowns), the single-flight of leases and of blob downloads,
 * and the download bound. A reload rebuilds only what the config describes.
 */
export class CarriedState {
  readonly tokens: TokenCache;
  readonly locks: LockService;
  readonly downloads = new Map<string, BlobDownload>();
  /** Keyed by registry, URL and health policy: an endpoint whose policy changed starts afresh. */
  readonly health = new Map<string, EndpointHealth>();

  constructor(
    readonly downloadSlots: DownloadSlots,
    redis?: SharedRedis,
    locks?: LockService,
  ) {
    this.tokens = new TokenCache(redis);
    this.locks = locks ?? new LocalLocks();
  }
}

export class Mirror {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  /** Which repositories a cached blob belongs to (passthrough_auth registries). */
  readonly membership: BlobMembership;
  readonly tagPolicy: TagPolicy;
  readonly referrers: ReferrersService;
  private readonly upstreams = new Map<string, Upstream>();
  private readonly clients = new Map<string, RegistryClient>();

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
    shared: { redis?: SharedRedis; blobs?: SharedBlobTier; metrics?: Metrics; traffic?: TrafficStats; carried?: CarriedState } = {},
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
    const carried = shared.carried ?? new CarriedState(new DownloadSlots(config.cache.maxDownloads), shared.redis);
    const { tokens } = carried;
    const locks = (this.locks = carried.locks);
    const healthInUse = new Set<string>();
    for (const registry of config.registries) {
      const healthOf = (url: string, create: () => EndpointHealth) => {
        const key = JSON.stringify([registry.name, url, registry.health]);
        healthInUse.add(key);
        const known = carried.health.get(key) ?? create();
        carried.health.set(key, known);
        return known;
      };
      const upstream = new Upstream(registry, tokens, log, this.metrics, healthOf);
      this.upstreams.set(registry.name, upstream);
      this.clients.set(registry.name, new RegistryClient(upstream));
    }
    for (const key of carried.health.keys()) if (!healthInUse.has(key)) carried.health.delete(key);
    const clientFor = (name: string) => this.clientFor(name);
    this.tagPolicy = new TagPolicy(config.cache.tagTtlMs, config.registries);
    this.manifests = new ManifestService(meta, locks, clientFor, (repo, tag) => this.tagPolicy.ttlMs(repo, tag), config.cache.negativeTtlMs, log);
    this.membership = new BlobMembership(meta);
    this.blobs = new BlobService(blobStore, shared.blobs, locks, clientFor, log, this.membership, carried.downloadSlots, carried.downloads);
    this.tags = new TagService(meta, clientFor, config.cache.tagTtlMs, log);
    this.referrers = new ReferrersService(clientFor, config.cache.referrersTtlMs, log);
    if (shared.redis) {
      this.sharedHealth = new SharedHealth(shared.redis, () => [...this.upstreams.values()].flatMap((u) => [...u.endpoints, ...u.blobEndpoints]));
      this.sharedHealth.start();
    }
  }

  /** The last listing and the meta store's version it was read at. */
  private listing: { version: string; repositories: readonly CachedRepository[] } | undefined;

  /**
   * Cached repositories with their tags, digests, image sizes and last pull (for the
   * dashboard): the same array until the meta store's version moves, so a dashboard's
   * refreshes build (and the status API encodes) it once per change.
   */
  async cachedRepositories(): Promise<readonly CachedRepository[]> {
    const version = this.meta.listingVersion();
    if (version !== undefined && this.listing?.version === version) return this.listing.repositories;
    const repos = await this.meta.listRepositoryTags();
    const repositories = repos.map(({ registry, repository, tags }) => ({
      registry,
      repository,
      tags: tags.map((record) => {
        const policy = this.tagPolicy.resolve(registry, repository, record.tag);
        return {
          tag: record.tag,
          digest: record.digest,
          mediaType: record.mediaType,
          size: record.imageSize ?? null,
          checkedAt: new Date(record.checkedAt).toISOString(),
          pulledAt: record.pulledAt ? new Date(record.pulledAt).toISOString() : null,
          policy: { immutable: policy.immutable, ttlSeconds: policy.immutable ? null : policy.ttlMs / 1000, rule: policy.rule },
        };
      }),
    }));
    if (version !== undefined) this.listing = { version, repositories };
    return repositories;
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

  private clientFor(name: string): RegistryClient {
    const client = this.clients.get(name);
    if (!client) throw new Error(`no upstream for registry ${name}`);
    return client;
  }

  /** Whether a registry's upstream accepts these credentials: for reading `repository`, or (none named) for a login. */
  upstreamAccepts(registry: string, credentials: Credentials | undefined, repository?: string): Promise<boolean> {
    return this.clientFor(registry).accepts(credentials, repository);
  }

  /** Each registry's tiers and their health, for the status API. */
  upstreamStatus(): RegistryStatus[] {
    return this.config.registries.map((r) => ({ registry: r.name, endpoints: this.upstreams.get(r.name)!.status(), staleResponses: this.metrics.staleCounts(r.name) }));
  }

  get registries(): readonly RegistryConfig[] {
    return this.config.registries;
  }
}
