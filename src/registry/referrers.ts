// The OCI referrers API (GET /v2/<name>/referrers/<digest>): signatures, SBOMs and
// attestations that point at a manifest. The upstream's image index is passed through
// (with its artifactType filter and its next page) or its 404, which tells clients to
// fall back to the `sha256-<hex>` tag schema. Answers change whenever something is
// signed, so they are kept only for referrers_ttl, and the last one is served while
// upstream fails (stale-if-error).
import { LRUCache } from "lru-cache";
import type { RepositoryRef } from "../cache/meta-store.ts";
import type { Logger } from "../observe/logger.ts";
import { RegistryError } from "../protocol/errors.ts";
import { MediaType } from "../protocol/media-types.ts";
import type { Credentials } from "../upstream/auth.ts";
import { failureFromResponse, UpstreamError } from "../upstream/errors.ts";
import type { Upstream } from "../upstream/upstream.ts";
import type { CacheResult } from "./results.ts";
import { toRegistryError } from "./upstream-errors.ts";

export interface ReferrersRequest {
  repo: RepositoryRef;
  digest: string;
  /** The client's query (artifactType, an upstream page cursor), without ns. */
  query: URLSearchParams;
  credentials?: Credentials;
}

export interface ReferrersResult {
  /** An OCI image index whose manifests are the referrers. */
  body: Uint8Array;
  /** The upstream's OCI-Filters-Applied header (e.g. "artifactType"), kept as is. */
  filtersApplied?: string;
  /** The query of the upstream's next page, to put behind the mirror's own path. */
  nextQuery?: string;
  cache: CacheResult;
}

type Answer = { found: true; body: Uint8Array; filtersApplied?: string; nextQuery?: string } | { found: false; error: RegistryError };

/** A referrers index is small; anything bigger than this from upstream is refused. */
const MAX_INDEX_BYTES = 4 * 1024 * 1024;
const MAX_QUERY_LENGTH = 2048;

export class ReferrersService {
  private readonly answers = new LRUCache<string, { at: number; answer: Answer }>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (e) => (e.answer.found ? e.answer.body.byteLength : 0) + 500,
  });
  private readonly inflight = new Map<string, Promise<Answer>>();

  constructor(
    private readonly upstreamFor: (registry: string) => Upstream,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  async get(req: ReferrersRequest): Promise<ReferrersResult> {
    const query = new URLSearchParams([...req.query].filter(([k]) => k !== "ns"));
    query.sort();
    const search = query.toString();
    if (search.length > MAX_QUERY_LENGTH) throw new RegistryError("UNSUPPORTED", "referrers query too long", { status: 400 });
    const key = `${req.repo.registry}/${req.repo.repository}@${req.digest}?${search}`;
    const cached = this.answers.get(key);
    if (cached && Date.now() - cached.at < this.ttlMs) return served(cached.answer, "hit");
    try {
      const answer = await this.once(key, () => this.fetch(req.repo, req.digest, search, req.credentials));
      this.answers.set(key, { at: Date.now(), answer });
      return served(answer, "miss");
    } catch (error) {
      const mapped = toRegistryError(error, "MANIFEST_UNKNOWN", `referrers of ${req.digest}`);
      if (cached && upstreamTrouble(mapped)) {
        this.log.warn({ registry: req.repo.registry, repository: req.repo.repository, digest: req.digest, error: mapped.message }, "upstream unavailable; serving cached referrers (stale-if-error)");
        return served(cached.answer, "stale");
      }
      throw mapped;
    }
  }

  private async fetch(repo: RepositoryRef, digest: string, search: string, credentials?: Credentials): Promise<Answer> {
    const path = `/v2/${repo.repository}/referrers/${digest}${search ? `?${search}` : ""}`;
    const { response, endpoint } = await this.upstreamFor(repo.registry).request({ method: "GET", path, repository: repo.repository, accept: [MediaType.ociIndex], credentials });
    if (response.status === 404) {
      // No referrers API upstream (or no such repository): clients fall back to the tag schema.
      return { found: false, error: toRegistryError(new UpstreamError(endpoint.url, await failureFromResponse(response)), "MANIFEST_UNKNOWN", `referrers of ${digest}`) };
    }
    if (!response.ok) throw new UpstreamError(endpoint.url, await failureFromResponse(response));
    if (Number(response.headers.get("content-length") ?? 0) > MAX_INDEX_BYTES) {
      await response.body?.cancel();
      throw new RegistryError("MANIFEST_INVALID", "upstream referrers index too large", { status: 502 });
    }
    const body = new Uint8Array(await response.arrayBuffer());
    if (body.byteLength > MAX_INDEX_BYTES || !isImageIndex(body)) {
      // Never cache or pass on what is not an image index.
      throw new RegistryError("MANIFEST_INVALID", "upstream referrers answer is not an OCI image index", { status: 502 });
    }
    return { found: true, body, filtersApplied: response.headers.get("oci-filters-applied") ?? undefined, nextQuery: nextPageQuery(response.headers.get("link")) };
  }

  /** Single-flight: concurrent identical referrers requests share one upstream request. */
  private once(key: string, work: () => Promise<Answer>): Promise<Answer> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const promise = work().finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }
}

function served(answer: Answer, cache: CacheResult): ReferrersResult {
  if (!answer.found) throw answer.error;
  return { body: answer.body, filtersApplied: answer.filtersApplied, nextQuery: answer.nextQuery, cache };
}

/** Failures that say nothing about the referrers themselves: worth a stale answer. */
function upstreamTrouble(e: RegistryError): boolean {
  return e.status >= 500 || e.status === 429;
}

function isImageIndex(body: Uint8Array): boolean {
  try {
    const v = JSON.parse(new TextDecoder().decode(body)) as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown };
    return v.schemaVersion === 2 && Array.isArray(v.manifests) && (v.mediaType === undefined || v.mediaType === MediaType.ociIndex);
  } catch {
    return false;
  }
}

/** `Link: <https://r.example/v2/x/referrers/sha256:…?n=10&last=…>; rel="next"` → "n=10&last=…" (ns dropped: the mirror adds its own). */
export function nextPageQuery(link: string | null): string | undefined {
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  if (!m) return undefined;
  const url = new URL(m[1]!, "http://upstream.invalid");
  url.searchParams.delete("ns");
  const search = url.searchParams.toString();
  return search === "" ? undefined : search;
}
