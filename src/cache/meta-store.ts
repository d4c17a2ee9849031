// What ferry knows besides blob bytes: tag → digest mappings with their freshness and
// manifests by digest. Async so that a shared (Redis) implementation fits the same shape.

export interface TagRecord {
  digest: string;
  mediaType: string;
  size: number;
  /** When the mapping was last confirmed by upstream (ms since epoch). */
  checkedAt: number;
  /** When a client last pulled this tag through this replica (ms since epoch). */
  pulledAt?: number;
}

export interface ManifestRecord {
  digest: string;
  mediaType: string;
  body: Uint8Array;
}

export interface RepositoryRef {
  registry: string;
  repository: string;
}

/** A repository with its cached tags' records, sorted by tag (the dashboard's listing). */
export interface RepositoryTags extends RepositoryRef {
  tags: (TagRecord & {
    tag: string;
    /** imageSize() of the tag's manifest; undefined when the manifest is not cached. */
    imageSize?: number | null;
  })[];
}

export interface MetaStore {
  getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined>;
  putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void>;
  /** Notes a pull of the tag (best effort, for the dashboard). */
  touchTag(repo: RepositoryRef, tag: string, at: number): void;
  getManifest(repo: RepositoryRef, digest: string): Promise<ManifestRecord | undefined>;
  putManifest(repo: RepositoryRef, record: ManifestRecord): Promise<void>;
  /** Cached tags of a repository, sorted. */
  listTags(repo: RepositoryRef): Promise<string[]>;
  /** Every cached manifest (for pruning: what blobs are still referenced). */
  manifests(): AsyncIterable<RepositoryRef & ManifestRecord>;
  /** Repositories with anything cached, sorted by registry then name. */
  listRepositories(): Promise<RepositoryRef[]>;
  /** listRepositories() with each one's tags as listTags() and getTag() give them, in one read instead of one per tag. */
  listRepositoryTags(): Promise<RepositoryTags[]>;
  /**
   * A value that changes whenever listRepositoryTags() may answer differently; undefined
   * when that cannot be known (a store other replicas write to).
   */
  listingVersion(): string | undefined;
  close(): void;
}
