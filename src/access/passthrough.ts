// passthrough_auth: before anything cached from such a registry is served, the upstream
// confirms that this client (its own credentials, or anonymous) may read the repository.
// Decisions are cached briefly, so a pull is one check, not one per blob.
import { LRUCache } from "lru-cache";
import { credentialKey, type Credentials } from "../upstream/auth.ts";
import type { Upstream } from "../upstream/upstream.ts";

const DECISION_TTL_MS = 60_000;

export class PassthroughChecker {
  private readonly decisions = new LRUCache<string, boolean>({ max: 50_000, ttl: DECISION_TTL_MS });
  private readonly pending = new Map<string, Promise<boolean>>();

  constructor(private readonly upstreamFor: (registry: string) => Upstream) {}

  async canRead(registry: string, repository: string, credentials: Credentials | undefined): Promise<boolean> {
    const key = `${registry}/${repository}|${credentialKey(credentials)}`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    let check = this.pending.get(key);
    if (!check) {
      check = this.upstreamFor(registry)
        .canRead(repository, credentials)
        .then((ok) => {
          this.decisions.set(key, ok);
          return ok;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, check);
    }
    return check;
  }
}
