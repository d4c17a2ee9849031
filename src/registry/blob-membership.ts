// Which repository a cached blob is known to belong to. Blobs are stored once per registry
// and digest; under passthrough_auth a blob may only be served under a repository that
// holds it, so a private layer's digest opens nothing through a public repository.
// Known = a cached manifest of that repository refers to it (noted when a manifest is
// served, or found among the repository's cached tags), or the upstream confirmed it.
import { LRUCache } from "lru-cache";
import type { MetaStore, RepositoryRef } from "../cache/meta-store.ts";

/** Cached tags of one repository looked through when a blob isn't known yet (bounded). */
const MAX_TAGS_SCANNED = 500;
/** A repository's cached tags are looked through at most this often. */
const SCAN_TTL_MS = 60_000;

export class BlobMembership {
  private readonly known = new LRUCache<string, true>({ max: 500_000 });
  private readonly scanned = new LRUCache<string, Promise<void>>({ max: 10_000, ttl: SCAN_TTL_MS });

  constructor(private readonly meta: MetaStore) {}

  note(repo: RepositoryRef, digest: string): void {
    this.known.set(memberKey(repo, digest), true);
  }

  /** The config and layers an image manifest refers to (an index refers to manifests, not blobs). */
  noteManifest(repo: RepositoryRef, body: Uint8Array): void {
    for (const digest of blobsOf(body)) this.note(repo, digest);
  }

  async has(repo: RepositoryRef, digest: string): Promise<boolean> {
    if (this.known.has(memberKey(repo, digest))) return true;
    const repoKey = `${repo.registry}/${repo.repository}`;
    let scan = this.scanned.get(repoKey);
    if (!scan) {
      scan = this.scan(repo).catch(() => {
        this.scanned.delete(repoKey); // a store hiccup: look again next time
      });
      this.scanned.set(repoKey, scan);
    }
    await scan;
    return this.known.has(memberKey(repo, digest));
  }

  /** Notes what the repository's cached manifests (by tag, and their platform manifests) refer to. */
  private async scan(repo: RepositoryRef): Promise<void> {
    const tags = (await this.meta.listTags(repo)).slice(0, MAX_TAGS_SCANNED);
    for (const tag of tags) {
      const record = await this.meta.getTag(repo, tag);
      const manifest = record && (await this.meta.getManifest(repo, record.digest));
      if (!manifest) continue;
      this.noteManifest(repo, manifest.body);
      for (const child of manifestsOf(manifest.body)) {
        const platform = await this.meta.getManifest(repo, child);
        if (platform) this.noteManifest(repo, platform.body);
      }
    }
  }
}

function memberKey(repo: RepositoryRef, digest: string): string {
  return `${repo.registry}/${repo.repository}@${digest}`;
}

interface ManifestShape {
  config?: { digest?: unknown };
  layers?: { digest?: unknown }[];
  blobs?: { digest?: unknown }[];
  manifests?: { digest?: unknown }[];
}

function parse(body: Uint8Array): ManifestShape {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as unknown;
    return parsed && typeof parsed === "object" ? (parsed as ManifestShape) : {};
  } catch {
    return {};
  }
}

function digests(list: { digest?: unknown }[] | undefined): string[] {
  return Array.isArray(list) ? list.map((d) => d?.digest).filter((d): d is string => typeof d === "string") : [];
}

function blobsOf(body: Uint8Array): string[] {
  const m = parse(body);
  return [...digests(m.config ? [m.config] : []), ...digests(m.layers), ...digests(m.blobs)];
}

function manifestsOf(body: Uint8Array): string[] {
  return digests(parse(body).manifests);
}
