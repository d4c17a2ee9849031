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
import { SingleFlight } from "../shared/single-flight.ts";
import type { Credentials } from "../upstream/auth.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";
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

const MAX_QUERY_LENGTH = 2048;

export class ReferrersService {
  private readonly answers = new LRUCache<string, { at: number; answer: Answer }>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (e) => (e.answer.found ? e.answer.body.byteLength : 0) + 500,
  });
  /** Concurrent identical referrers requests share one upstream request. */
  private readonly fetches = new SingleFlight<Answer>();

  constructor(
    private readonly clientFor: (registry: string) => RegistryClient,
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
      const answer = await this.fetches.run(key, () => this.fetch(req.repo, req.digest, search, req.credentials));
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
    const index = await this.clientFor(repo.registry).referrers(repo.repository, digest, search, { credentials });
    // No referrers API upstream (or no such repository): clients fall back to the tag schema.
    if (!index.found) return { found: false, error: toRegistryError(index.error, "MANIFEST_UNKNOWN", `referrers of ${digest}`) };
    return { found: true, body: index.body, filtersApplied: index.filtersApplied, nextQuery: index.nextQuery };
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
