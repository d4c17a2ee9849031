// Manifest pulls. Manifests are cached by digest (immutable, verified) with their media
// type; a tag maps to a digest that is fresh for tag_ttl. After that the mapping is
// revalidated with a HEAD (which Docker Hub does not count as a pull) and only a changed
// digest is fetched. When upstream fails (or every tier rests), the last known mapping is
// served at once, marked stale, and its clock moves forward (stale-if-error): an outage
// costs one timeout per tag_ttl, not one per pull.
import { LRUCache } from "lru-cache";
import type { LockService } from "../cache/locks.ts";
import type { ManifestRecord, MetaStore, RepositoryRef, TagRecord } from "../cache/meta-store.ts";
import type { Logger } from "../observe/logger.ts";
import { SingleFlight } from "../shared/single-flight.ts";
import { parseDigest } from "../protocol/digest.ts";
import { RegistryError } from "../protocol/errors.ts";
import { acceptsMediaType, ALL_MANIFEST_TYPES, mediaTypeFromBody } from "../protocol/media-types.ts";
import { manifestDigest } from "../protocol/schema1.ts";
import type { Credentials } from "../upstream/auth.ts";
import { UpstreamError } from "../upstream/errors.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";
import type { CacheResult, ManifestResult } from "./results.ts";
import { toRegistryError } from "./upstream-errors.ts";

type FetchedManifest = Omit<ManifestResult, "cache">;
type Revalidation = { record: TagRecord; cache: CacheResult };

export interface ManifestRequest {
  repo: RepositoryRef;
  reference: string; // a tag or a validated digest
  accept: string[];
  method: "GET" | "HEAD";
  /** A passthrough client's own upstream credentials, for what has to be fetched. */
  credentials?: Credentials;
}

/** Rounds (about 0.5 s each, at most) a replica waits for another one's manifest fetch. */
const MAX_PEER_WAIT_ROUNDS = 120;

export class ManifestService {
  /** Upstream 404s, remembered briefly so a typo'd image doesn't hammer the upstream. */
  private readonly notFound: LRUCache<string, RegistryError>;
  /** Hot copies in memory: tag records (used while fresh) and manifests (immutable). */
  private readonly hotTags = new LRUCache<string, TagRecord>({ max: 20_000 });
  private readonly hotManifests = new LRUCache<string, ManifestRecord>({ maxSize: 64 * 1024 * 1024, sizeCalculation: (m) => m.body.byteLength + 200 });
  /** Single-flight, one per result type: a revalidation never joins a fetch (tag_ttl = 0s once answered 500). */
  private readonly fetches = new SingleFlight<FetchedManifest>();
  private readonly revalidations = new SingleFlight<Revalidation>();

  constructor(
    private readonly meta: MetaStore,
    private readonly locks: LockService,
    private readonly clientFor: (registry: string) => RegistryClient,
    private readonly tagTtlMs: (repo: RepositoryRef, tag: string) => number,
    negativeTtlMs: number,
    private readonly log: Logger,
  ) {
    this.notFound = new LRUCache({ max: 10_000, ttl: Math.max(1, negativeTtlMs) });
  }

  async get(req: ManifestRequest): Promise<ManifestResult> {
    const byDigest = parseDigest(req.reference) !== undefined;
    const negativeKey = `${req.repo.registry}/${req.repo.repository}:${req.reference}`;
    // A 404 to the client's own Accept is remembered for that Accept only.
    const acceptKey = `${negativeKey} accept=${[...req.accept].sort().join(",")}`;
    const remembered = this.notFound.get(negativeKey) ?? this.notFound.get(acceptKey);
    if (remembered) throw remembered;
    try {
      return byDigest ? await this.byDigest(req, req.reference) : await this.byTag(req);
    } catch (error) {
      const acceptDependent = error instanceof NotInAcceptedTypes;
      const mapped = toRegistryError(acceptDependent ? error.upstream : error, "MANIFEST_UNKNOWN", `manifest ${req.repo.repository}:${req.reference}`);
      if (mapped.status === 404) this.notFound.set(acceptDependent ? acceptKey : negativeKey, mapped);
      throw mapped;
    }
  }

  private async byDigest(req: ManifestRequest, digest: string): Promise<ManifestResult> {
    const cached = await this.getManifest(req.repo, digest);
    if (cached) return { ...cached, cache: "hit" };
    const key = `m:${req.repo.registry}/${req.repo.repository}@${digest}`;
    const fetched = await this.fetches.run(key, () =>
      this.acrossReplicas(
        key,
        () => this.getManifest(req.repo, digest),
        () => this.fetch(req.repo, digest, unionAccept(req.accept), req.credentials),
      ),
    );
    return { ...fetched, cache: "miss" };
  }

  private async byTag(req: ManifestRequest): Promise<ManifestResult> {
    const tag = req.reference;
    const record = await this.getTag(req.repo, tag);
    // The client can't take what the tag points to (an old client and an index).
    if (record && !acceptsMediaType(req.accept, record.mediaType)) return this.withClientAccept(req);
    if (record && Date.now() - record.checkedAt < this.tagTtlMs(req.repo, tag)) {
      return this.serveRecord(req, record, "hit");
    }
    const key = `t:${req.repo.registry}/${req.repo.repository}:${tag}`;
    if (record) {
      const outcome = await this.revalidations.run(key, () => this.revalidate(req.repo, tag, record, req.credentials));
      return this.serveRecord(req, outcome.record, outcome.cache);
    }
    const fetched = await this.fetches.run(key, () =>
      this.acrossReplicas(
        key,
        async () => {
          const known = await this.getTag(req.repo, tag);
          return known ? this.getManifest(req.repo, known.digest) : undefined;
        },
        async () => {
          const m = await this.fetch(req.repo, tag, unionAccept(req.accept), req.credentials);
          await this.putTag(req.repo, tag, { digest: m.digest, mediaType: m.mediaType, size: m.body.byteLength, checkedAt: Date.now() });
          return m;
        },
      ),
    );
    if (!acceptsMediaType(req.accept, fetched.mediaType)) return this.withClientAccept(req);
    this.meta.touchTag(req.repo, tag, Date.now());
    return { ...fetched, cache: "miss" };
  }

  /**
   * Upstream asked with the client's own Accept, the mapping untouched. Its 404 may only
   * mean "not in the types you accept" (distribution: "OCI index found, but accept header
   * does not support OCI indexes"): it is about this client, not about the tag.
   */
  private async withClientAccept(req: ManifestRequest): Promise<ManifestResult> {
    try {
      return { ...(await this.fetch(req.repo, req.reference, req.accept, req.credentials)), cache: "bypass" };
    } catch (error) {
      throw error instanceof UpstreamError && error.failure.kind === "status" && error.failure.status === 404 ? new NotInAcceptedTypes(error) : error;
    }
  }

  private async serveRecord(req: ManifestRequest, record: TagRecord, cache: CacheResult): Promise<ManifestResult> {
    this.meta.touchTag(req.repo, req.reference, Date.now());
    const manifest = await this.getManifest(req.repo, record.digest);
    if (manifest) return { ...manifest, cache };
    return { ...(await this.byDigest(req, record.digest)), cache: "miss" };
  }

  /** HEAD the tag upstream; on failure keep serving the known mapping (stale-if-error). */
  private async revalidate(repo: RepositoryRef, tag: string, record: TagRecord, credentials?: Credentials): Promise<Revalidation> {
    let head: Awaited<ReturnType<RegistryClient["headManifest"]>>;
    try {
      // Resting tiers are not asked: the cached copy is the answer until one is free.
      head = await this.clientFor(repo.registry).headManifest(repo.repository, tag, { accept: ALL_MANIFEST_TYPES, credentials, ifAllResting: "fail" });
    } catch (error) {
      this.log.warn({ registry: repo.registry, repository: repo.repository, tag, error: (error as Error).message }, "upstream unavailable; serving cached tag (stale-if-error)");
      return this.stale(repo, tag, record);
    }
    if (!head.found) throw head.error;
    const digest = head.digest;
    if (!digest) {
      this.log.warn({ registry: repo.registry, repository: repo.repository, tag }, "tag revalidation answered no digest; serving cached tag (stale-if-error)");
      return this.stale(repo, tag, record);
    }
    if (digest === record.digest) {
      const refreshed = { ...record, checkedAt: Date.now() };
      await this.putTag(repo, tag, refreshed);
      return { record: refreshed, cache: "hit" };
    }
    const m = await this.fetch(repo, digest, ALL_MANIFEST_TYPES, credentials);
    const updated = { digest: m.digest, mediaType: m.mediaType, size: m.body.byteLength, checkedAt: Date.now() };
    await this.putTag(repo, tag, updated);
    return { record: updated, cache: "miss" };
  }

  /** A failed check moves the tag's clock forward: the next pulls within tag_ttl are hits, and upstream is asked again after it. */
  private async stale(repo: RepositoryRef, tag: string, record: TagRecord): Promise<Revalidation> {
    const postponed = { ...record, checkedAt: Date.now() };
    await this.putTag(repo, tag, postponed);
    return { record: postponed, cache: "stale" };
  }

  /** GET a manifest upstream, verify its digest, cache it by digest. */
  private async fetch(repo: RepositoryRef, reference: string, accept: readonly string[], credentials?: Credentials): Promise<FetchedManifest> {
    const fetched = await this.clientFor(repo.registry).getManifest(repo.repository, reference, { accept, credentials });
    if (!fetched.found) throw fetched.error;
    const { body, contentType } = fetched;
    const expected = parseDigest(reference) ?? parseDigest(fetched.digest ?? "");
    const actual = manifestDigest(body, expected?.algorithm ?? "sha256");
    if (expected && expected.text !== actual) {
      // Never cache or serve bytes that don't match the digest they were fetched for.
      throw new RegistryError("MANIFEST_INVALID", `upstream manifest does not match its digest (expected ${expected.text}, got ${actual})`, { status: 502 });
    }
    const mediaType = contentType && contentType !== "application/json" && contentType !== "text/plain" ? contentType : (mediaTypeFromBody(body) ?? "application/vnd.oci.image.manifest.v1+json");
    const manifest = { digest: actual, mediaType, body };
    await this.meta.putManifest(repo, manifest);
    this.hotManifests.set(`${repo.registry}/${repo.repository}@${manifest.digest}`, manifest);
    return manifest;
  }

  /**
   * Cross-replica single-flight: the replica holding the lease fetches; the others wait
   * (bounded) for its result to appear in the shared metadata store.
   */
  private async acrossReplicas<T>(name: string, lookup: () => Promise<T | undefined>, work: () => Promise<T>): Promise<T> {
    for (let round = 0; round < MAX_PEER_WAIT_ROUNDS; round++) {
      const lease = await this.locks.acquire(name);
      if (lease) {
        try {
          return (round > 0 ? await lookup() : undefined) ?? (await work());
        } finally {
          await lease.release();
        }
      }
      await Bun.sleep(Math.min(50 * 2 ** Math.min(round, 4), 500));
      const found = await lookup();
      if (found) return found;
    }
    return work();
  }

  private async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const key = `${repo.registry}/${repo.repository}:${tag}`;
    const hot = this.hotTags.get(key);
    if (hot && Date.now() - hot.checkedAt < this.tagTtlMs(repo, tag)) return hot;
    // Past its TTL here, the shared store may hold a fresher one (another replica revalidated).
    const record = await this.meta.getTag(repo, tag);
    if (record) this.hotTags.set(key, record);
    return record;
  }

  private async putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void> {
    this.hotTags.set(`${repo.registry}/${repo.repository}:${tag}`, record);
    await this.meta.putTag(repo, tag, record);
  }

  private async getManifest(repo: RepositoryRef, digest: string): Promise<ManifestRecord | undefined> {
    const key = `${repo.registry}/${repo.repository}@${digest}`;
    const hot = this.hotManifests.get(key);
    if (hot) return hot;
    const record = await this.meta.getManifest(repo, digest);
    if (record) this.hotManifests.set(key, record);
    return record;
  }
}

/** Upstream's 404 to a client's narrow Accept (see withClientAccept). */
class NotInAcceptedTypes extends Error {
  constructor(readonly upstream: UpstreamError) {
    super(upstream.message);
    this.name = "NotInAcceptedTypes";
  }
}

/** What ferry asks upstream for: every modern manifest type, plus anything else the client takes. */
function unionAccept(clientAccept: readonly string[]): string[] {
  const extra = clientAccept.filter((a) => a !== "*/*" && !(ALL_MANIFEST_TYPES as readonly string[]).includes(a));
  return [...ALL_MANIFEST_TYPES, ...extra];
}
