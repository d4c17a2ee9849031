// passthrough_auth: before anything cached from such a registry is served, the upstream
// confirms that this client (its own credentials, or anonymous) may read the repository.
// Decisions are cached briefly, so a pull is one check, not one per blob.
import { LRUCache } from "lru-cache";
import { SingleFlight } from "../shared/single-flight.ts";
import { credentialKey, type Credentials } from "../shared/credentials.ts";

const DECISION_TTL_MS = 60_000;

/** The registry layer's answer to "does this registry's upstream accept these credentials" (for reading `repository`, or for a login). */
export interface UpstreamCredentialCheck {
  upstreamAccepts(registry: string, credentials: Credentials | undefined, repository?: string): Promise<boolean>;
}

export class PassthroughChecker {
  private readonly decisions = new LRUCache<string, boolean>({ max: 50_000, ttl: DECISION_TTL_MS });
  private readonly checks = new SingleFlight<boolean>();

  constructor(private readonly upstream: UpstreamCredentialCheck) {}

  async canRead(registry: string, repository: string, credentials: Credentials | undefined): Promise<boolean> {
    const key = `${registry}/${repository}|${credentialKey(credentials)}`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    return this.checks.run(key, async () => {
      const ok = await this.upstream.upstreamAccepts(registry, credentials, repository);
      this.decisions.set(key, ok);
      return ok;
    });
  }
}
