// Everything a pull needs, wired once: the stores, one Upstream per registry, and the
// manifest/blob/tag services on top of them.
import type { Config, RegistryConfig } from "../config/config.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import { LocalLocks, type LockService } from "../cache/locks.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import type { SharedRedis } from "../cache/redis-client.ts";
import type { Logger } from "../observe/logger.ts";
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

  constructor(
    readonly config: Config,
    readonly meta: MetaStore,
    readonly blobStore: FsBlobStore,
    readonly log: Logger,
    shared: { redis?: SharedRedis; blobs?: SharedBlobTier; locks?: LockService } = {},
  ) {
    const tokens = new TokenCache(shared.redis);
    const locks = shared.locks ?? new LocalLocks();
    for (const registry of config.registries) this.upstreams.set(registry.name, new Upstream(registry, tokens, log));
    const upstreamFor = (name: string) => {
      const upstream = this.upstreams.get(name);
      if (!upstream) throw new Error(`no upstream for registry ${name}`);
      return upstream;
    };
    this.manifests = new ManifestService(meta, locks, upstreamFor, config.cache.tagTtlMs, config.cache.negativeTtlMs, log);
    this.blobs = new BlobService(blobStore, shared.blobs, locks, upstreamFor, log);
    this.tags = new TagService(meta, upstreamFor, config.cache.tagTtlMs, log);
    if (shared.redis) {
      this.sharedHealth = new SharedHealth(shared.redis, () => [...this.upstreams.values()].flatMap((u) => [...u.endpoints, ...u.blobEndpoints]));
      this.sharedHealth.start();
    }
  }

  close(): void {
    this.sharedHealth?.stop();
  }

  /** Each registry's tiers and their health, for the status API. */
  upstreamStatus() {
    return this.config.registries.map((r) => ({ registry: r.name, endpoints: this.upstreams.get(r.name)!.status() }));
  }

  get registries(): readonly RegistryConfig[] {
    return this.config.registries;
  }
}
