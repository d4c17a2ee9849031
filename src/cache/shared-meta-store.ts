// MetaStore for replicas: Redis is the shared truth, the local SQLite store a write-
// through copy. Reads try Redis first and fall back to the local copy while Redis is
// down or has lost the key (and then share it again), so an outage never turns a
// servable pull into an error, and the replica rejoins by itself when Redis returns.
//
// Keys of one repository carry its name as a hash tag ({registry/repo}), so a Redis
// Cluster keeps them in one slot and a MULTI over them works; the one set spanning
// repositories (repos) is written by a command of its own.
import type { ManifestRecord, MetaStore, RepositoryRef, RepositoryTags, TagRecord } from "./meta-store.ts";
import { imageSize } from "../protocol/image-size.ts";
import type { SharedRedis } from "../redis/redis-client.ts";

/** Tag mappings and manifests expire from Redis after this long unused (they are re-fetchable). */
const RETENTION_SECONDS = 30 * 24 * 3600;

export class SharedMetaStore implements MetaStore {
  constructor(
    private readonly local: MetaStore,
    private readonly redis: SharedRedis,
  ) {}

  private repoId(repo: RepositoryRef): string {
    return `${repo.registry}/${repo.repository}`;
  }

  /** A key of one repository's: its name in braces is the Cluster hash tag. */
  private repoKey(kind: "tag" | "tags" | "manifest", repo: RepositoryRef, ...rest: string[]): string {
    return this.redis.key(kind, `{${this.repoId(repo)}}`, ...rest);
  }

  async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const text = await this.redis.try((c) => c.get(this.repoKey("tag", repo, tag)));
    return this.settleTag(repo, tag, text, await this.local.getTag(repo, tag));
  }

  /**
   * What Redis's answer for a tag (undefined: Redis down; null: lost) makes of it: the local
   * copy answers and is shared again, or the shared mapping is copied locally, with this
   * replica's own last pull.
   */
  private async settleTag(repo: RepositoryRef, tag: string, text: string | null | undefined, local: TagRecord | undefined): Promise<TagRecord | undefined> {
    if (text === undefined) return local;
    if (text === null) return this.restore(repo, tag);
    const record = JSON.parse(text) as TagRecord;
    if (!local || local.digest !== record.digest || local.mediaType !== record.mediaType || local.size !== record.size || local.checkedAt !== record.checkedAt) await this.local.putTag(repo, tag, record);
    return { ...record, pulledAt: local?.pulledAt };
  }

  async putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void> {
    await this.local.putTag(repo, tag, record);
    await this.shareTag(repo, tag, record, false);
  }

  /**
   * Redis answered but lost the mapping (restarted without persistence, evicted, expired):
   * the local copy answers and is shared again, with its manifest, unless another replica
   * wrote a mapping in the meantime.
   */
  private async restore(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const local = await this.local.getTag(repo, tag);
    if (!local) return undefined;
    const { pulledAt: _, ...record } = local;
    await this.shareTag(repo, tag, record, true);
    const manifest = await this.local.getManifest(repo, local.digest);
    if (manifest) await this.shareManifest(repo, manifest);
    return local;
  }

  private async shareTag(repo: RepositoryRef, tag: string, record: TagRecord, onlyIfMissing: boolean): Promise<void> {
    const set: [string, ...(string | number)[]] = ["set", this.repoKey("tag", repo, tag), JSON.stringify(record), "EX", RETENTION_SECONDS];
    if (onlyIfMissing) set.push("NX");
    await this.redis.try((c) => this.redis.multi(c, [set, ["sadd", this.repoKey("tags", repo), tag]]));
    await this.redis.try((c) => c.sadd(this.redis.key("repos"), this.repoId(repo)));
  }

  touchTag(repo: RepositoryRef, tag: string, at: number): void {
    this.local.touchTag(repo, tag, at);
  }

  async getManifest(repo: RepositoryRef, digest: string): Promise<ManifestRecord | undefined> {
    const local = await this.local.getManifest(repo, digest);
    if (local) return local; // immutable: a local copy is as good as the shared one
    const fields = await this.redis.try((c) => c.hgetallBuffer(this.repoKey("manifest", repo, digest)));
    if (!fields?.body || !fields.mediaType) return undefined;
    const record = { digest, mediaType: fields.mediaType.toString(), body: new Uint8Array(fields.body) };
    await this.local.putManifest(repo, record);
    return record;
  }

  async putManifest(repo: RepositoryRef, record: ManifestRecord): Promise<void> {
    await this.local.putManifest(repo, record);
    await this.shareManifest(repo, record);
  }

  private async shareManifest(repo: RepositoryRef, record: ManifestRecord): Promise<void> {
    const key = this.repoKey("manifest", repo, record.digest);
    await this.redis.try((c) =>
      this.redis.multi(c, [
        ["hset", key, "mediaType", record.mediaType, "body", Buffer.from(record.body)],
        ["expire", key, RETENTION_SECONDS],
      ]),
    );
    await this.redis.try((c) => c.sadd(this.redis.key("repos"), this.repoId(repo)));
  }

  /** The shared manifests (all replicas', every master of a Cluster), then the local ones; duplicates are harmless to callers. */
  async *manifests(): AsyncIterable<RepositoryRef & ManifestRecord> {
    const prefix = this.redis.key("manifest", "");
    for (const node of this.redis.masters()) {
      let cursor = "0";
      for (let round = 0; round < 100_000; round++) {
        const page = await this.redis.try(() => node.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500));
        if (!page) break;
        cursor = page[0];
        for (const key of page[1]) {
          // manifest:{registry/repository}:digest
          const match = /^\{([^/}]+)\/([^}]+)\}:(.+)$/.exec(key.slice(prefix.length));
          if (!match) continue;
          const fields = await this.redis.try(() => node.hgetallBuffer(key));
          if (!fields?.body || !fields.mediaType) continue;
          yield { registry: match[1]!, repository: match[2]!, digest: match[3]!, mediaType: fields.mediaType.toString(), body: new Uint8Array(fields.body) };
        }
        if (cursor === "0") break;
      }
    }
    yield* this.local.manifests();
  }

  /** The shared tags and this replica's own: Redis may have lost some (see restore). */
  async listTags(repo: RepositoryRef): Promise<string[]> {
    const [shared, local] = await Promise.all([this.redis.try((c) => c.smembers(this.repoKey("tags", repo))), this.local.listTags(repo)]);
    return [...new Set([...(shared ?? []), ...local])].sort();
  }

  async listRepositories(): Promise<RepositoryRef[]> {
    const [ids, local] = await Promise.all([this.redis.try((c) => c.smembers(this.redis.key("repos"))), this.local.listRepositories()]);
    const all = new Set([...(ids ?? []), ...local.map((r) => this.repoId(r))]);
    return [...all]
      .map((id) => {
        const slash = id.indexOf("/");
        return { registry: id.slice(0, slash), repository: id.slice(slash + 1) };
      })
      .sort((a, b) => a.registry.localeCompare(b.registry) || a.repository.localeCompare(b.repository));
  }

  /**
   * As listTags() and getTag() per repository, with one SMEMBERS and one MGET each (a
   * repository's keys share a Cluster slot); a shared mapping's image size comes from its
   * manifest (the local copy, else Redis's) when the local listing has none for that digest.
   */
  async listRepositoryTags(): Promise<RepositoryTags[]> {
    const [repos, local] = await Promise.all([this.listRepositories(), this.local.listRepositoryTags()]);
    const own = new Map(local.map((r) => [this.repoId(r), new Map(r.tags.map((t) => [t.tag, t]))]));
    return Promise.all(
      repos.map(async (repo) => {
        const mine = own.get(this.repoId(repo)) ?? new Map<string, RepositoryTags["tags"][number]>();
        const shared = await this.redis.try((c) => c.smembers(this.repoKey("tags", repo)));
        const names = [...new Set([...(shared ?? []), ...mine.keys()])].sort();
        const texts = shared && names.length ? await this.redis.try((c) => c.mget(names.map((tag) => this.repoKey("tag", repo, tag)))) : undefined;
        const tags = await Promise.all(
          names.map(async (tag, i) => {
            const record = await this.settleTag(repo, tag, texts?.[i], mine.get(tag));
            if (!record) return undefined;
            const known = mine.get(tag);
            if (known?.digest === record.digest && known.imageSize !== undefined) return { ...record, tag, imageSize: known.imageSize };
            const manifest = await this.getManifest(repo, record.digest);
            return { ...record, tag, imageSize: manifest ? imageSize(manifest.body) : undefined };
          }),
        );
        return { ...repo, tags: tags.filter((t) => t !== undefined) };
      }),
    );
  }

  /** Other replicas write to Redis unseen: no version. */
  listingVersion(): undefined {
    return undefined;
  }

  close(): void {
    this.local.close();
  }
}
