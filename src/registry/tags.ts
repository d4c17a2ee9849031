// Tag lists come from upstream (all pages, bounded), kept for tag_ttl and paginated
// here with n/last; when upstream fails, the tags ferry has cached are listed instead.
import { LRUCache } from "lru-cache";
import type { MetaStore, RepositoryRef } from "../cache/meta-store.ts";
import type { Logger } from "../observe/logger.ts";
import { credentialKey, type Credentials } from "../shared/credentials.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";
import { toRegistryError } from "./upstream-errors.ts";

export interface Page<T> {
  items: T[];
  /** The `last` value for the next page, when there is one. */
  next?: string;
}

/** Lexically sorted pagination as the distribution spec describes (n, last). */
export function paginate(sorted: readonly string[], n: number | undefined, last: string | undefined): Page<string> {
  const start = last === undefined ? 0 : sorted.findIndex((t) => t > last);
  const from = start < 0 ? sorted.length : start;
  if (n === undefined) return { items: sorted.slice(from) };
  const items = sorted.slice(from, from + n);
  const more = from + n < sorted.length;
  return { items, next: more && items.length > 0 ? items[items.length - 1] : undefined };
}

export class TagService {
  private readonly lists: LRUCache<string, string[]>;

  constructor(
    private readonly meta: MetaStore,
    private readonly clientFor: (registry: string) => RegistryClient,
    tagTtlMs: number,
    private readonly log: Logger,
  ) {
    this.lists = new LRUCache({ max: 1_000, ttl: Math.max(1, tagTtlMs) });
  }

  /**
   * The tags; `stale` when upstream failed and the tags ferry has cached are listed instead.
   * `credentials`: a passthrough client's own upstream credentials. The list is kept per
   * credential, so one client's view of a repository is never another's.
   */
  async list(repo: RepositoryRef, credentials?: Credentials): Promise<{ tags: string[]; stale: boolean }> {
    const key = `${repo.registry}/${repo.repository}|${credentialKey(credentials)}`;
    const cached = this.lists.get(key);
    if (cached) return { tags: cached, stale: false };
    const known = await this.meta.listTags(repo);
    try {
      // With tags cached, resting tiers are not asked: the cached list is the answer.
      const tags = await this.fetchAll(repo, credentials, known.length > 0 ? "fail" : "probe");
      this.lists.set(key, tags);
      return { tags, stale: false };
    } catch (error) {
      const mapped = toRegistryError(error, "NAME_UNKNOWN", `repository ${repo.repository}`);
      // A refusal (401/403/404) is the upstream's word on this client: never answered from the cache.
      if (known.length > 0 && ![401, 403, 404].includes(mapped.status)) {
        this.log.warn({ registry: repo.registry, repository: repo.repository, error: mapped.message }, "upstream tag list unavailable; listing cached tags");
        return { tags: known, stale: true };
      }
      throw mapped;
    }
  }

  private async fetchAll(repo: RepositoryRef, credentials: Credentials | undefined, ifAllResting: "probe" | "fail"): Promise<string[]> {
    const listed = await this.clientFor(repo.registry).listTags(repo.repository, { credentials, ifAllResting });
    if (!listed.found) throw listed.error;
    return listed.tags.sort();
  }
}
