// Everything a pull needs, wired once: the stores, one Upstream per registry, and the
// manifest/blob/tag services on top of them.
import type { Config, RegistryConfig } from "../config/config.ts";
import type { BlobStore } from "../cache/blob-store.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import type { Logger } from "../observe/logger.ts";
import { TokenCache } from "../upstream/auth.ts";
import { Upstream } from "../upstream/upstream.ts";
import { BlobService } from "./blobs.ts";
import { ManifestService } from "./manifests.ts";
import { TagService } from "./tags.ts";

export class Mirror {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  private readonly upstreams = new Map<string, Upstream>();

  constructor(
    readonly config: Config,
    readonly meta: MetaStore,
    readonly blobStore: BlobStore,
    readonly log: Logger,
  ) {
    const tokens = new TokenCache();
    for (const registry of config.registries) this.upstreams.set(registry.name, new Upstream(registry, tokens, log));
    const upstreamFor = (name: string) => {
      const upstream = this.upstreams.get(name);
      if (!upstream) throw new Error(`no upstream for registry ${name}`);
      return upstream;
    };
    this.manifests = new ManifestService(meta, upstreamFor, config.cache.tagTtlMs, config.cache.negativeTtlMs, log);
    this.blobs = new BlobService(blobStore, upstreamFor, log);
    this.tags = new TagService(meta, upstreamFor, config.cache.tagTtlMs, log);
  }

  /** Each registry's tiers and their health, for the status API. */
  upstreamStatus() {
    return this.config.registries.map((r) => ({ registry: r.name, endpoints: this.upstreams.get(r.name)!.status() }));
  }

  get registries(): readonly RegistryConfig[] {
    return this.config.registries;
  }
}
