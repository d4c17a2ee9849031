// Access control on the request path, in one place: User-Agent block list, per-client
// limits, authentication, per-registry allow/deny lists, anonymous access and
// passthrough checks. The registry API asks; this answers with a client or an OCI error.
import type { SharedRedis } from "../cache/redis-client.ts";
import type { Config, RegistryConfig } from "../config/config.ts";
import { formatBearerChallenge } from "../protocol/challenge.ts";
import { RegistryError } from "../protocol/errors.ts";
import { withLibraryPrefix } from "../protocol/names.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { ANONYMOUS, Authenticator, type Principal } from "./authenticator.ts";
import { ClientIpResolver } from "./client-ip.ts";
import type { Htpasswd } from "./htpasswd.ts";
import { onStreamEnd, RateLimiter, type LimiterCounters, type LimitVerdict } from "./limits.ts";
import { PassthroughChecker } from "./passthrough.ts";
import { RepositoryPolicy, userAgentBlocker } from "./policy.ts";

export interface Client {
  ip: string;
  principal: Principal;
  exempt: boolean;
}

export class AccessControl {
  readonly authenticator: Authenticator | undefined;
  readonly limiter: RateLimiter;
  private readonly ips: ClientIpResolver;
  private readonly policies = new Map<string, RepositoryPolicy>();
  private readonly blocked: (ua: string | null) => boolean;
  private readonly passthrough: PassthroughChecker;

  constructor(
    private readonly config: Config,
    upstreamFor: (registry: string) => Upstream,
    auth: { secret: string; users: Htpasswd } | undefined,
    redis?: SharedRedis,
    limiterCounters?: LimiterCounters,
  ) {
    this.authenticator = config.auth && auth ? new Authenticator(config.auth, auth.secret, auth.users) : undefined;
    this.limiter = new RateLimiter(config.limits, redis, Date.now, limiterCounters);
    this.ips = new ClientIpResolver(config.limits.trustedProxies);
    for (const r of config.registries) this.policies.set(r.name, new RepositoryPolicy(r.allow, r.deny));
    this.blocked = userAgentBlocker(config.limits.blockUserAgents);
    this.passthrough = new PassthroughChecker(upstreamFor);
  }

  /** Everything decided before routing: who, from where, and whether they may ask at all. */
  async admit(request: Request, peer: string): Promise<Client> {
    if (this.blocked(request.headers.get("user-agent"))) throw new RegistryError("DENIED", "this client is not allowed to use this mirror");
    const ip = this.ips.resolve(peer, request.headers.get("x-forwarded-for"));
    let principal: Principal = ANONYMOUS;
    if (this.authenticator) {
      const identified = await this.authenticator.identify(request.headers.get("authorization"));
      if ("invalid" in identified) throw this.challenge(request, undefined, identified.invalid);
      principal = identified;
    }
    const exempt = this.limiter.isExempt(ip, principal.kind !== "anonymous");
    if (!exempt) rejectOver(await this.limiter.request(ip));
    return { ip, principal, exempt };
  }

  /** `/v2/` itself: with auth on, a client without valid credentials is challenged (that is how `docker login` starts). */
  base(request: Request, client: Client): void {
    if (this.authenticator && client.principal.kind === "anonymous" && !request.headers.get("authorization")) throw this.challenge(request);
  }

  /**
   * May this client pull this repository? `clientName` is the name as the client wrote it
   * (what its token scope names). Returns the upstream credentials to fetch with, if any.
   */
  async authorize(request: Request, client: Client, registry: RegistryConfig, repository: string, clientName: string): Promise<{ credentials?: Principal["upstream"] }> {
    if (!this.policies.get(registry.name)!.allows(repository)) {
      throw new RegistryError("DENIED", `repository ${registry.name}/${repository} is not allowed on this mirror`);
    }
    const p = client.principal;
    const scope = `repository:${clientName}:pull`;
    if (this.authenticator) {
      // "upstream" principals are only meaningful on passthrough registries.
      const loggedIn = p.kind === "user" || p.kind === "token" || (p.kind === "upstream" && registry.passthroughAuth);
      if (!loggedIn && !registry.anonymous) throw this.challenge(request, scope, "authentication required");
      if (p.access && !p.access.has(clientName) && !p.access.has(withLibraryPrefix(clientName)) && !p.access.has(clientName.replace(/^library\//, ""))) {
        throw this.challenge(request, scope, "token does not grant this repository");
      }
    }
    if (!registry.passthroughAuth) return {};
    const credentials = p.kind === "upstream" ? p.upstream : undefined;
    let ok: boolean;
    try {
      ok = await this.passthrough.canRead(registry.name, repository, credentials);
    } catch {
      throw new RegistryError("UNAVAILABLE", `cannot confirm access to ${registry.name}/${repository} with the upstream`, { status: 503 });
    }
    if (!ok) {
      if (!credentials) throw this.challenge(request, scope, `${registry.name}/${repository} requires logging in with your upstream credentials`);
      throw new RegistryError("DENIED", `your upstream credentials do not allow pulling ${registry.name}/${repository}`);
    }
    return { credentials };
  }

  /**
   * Limits for a blob download: byte budget and a concurrency slot. `wrap` hands the slot
   * to a body (released when it ends); every answer without one must call `release`.
   */
  async admitDownload(client: Client): Promise<{ wrap?: (body: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>; release: () => void; addBytes: (n: number) => void }> {
    const none = () => {};
    if (client.exempt) return { addBytes: none, release: none };
    rejectOver(await this.limiter.bytesLeft(client.ip));
    const addBytes = (n: number) => void this.limiter.addBytes(client.ip, n);
    if (!this.limiter.concurrencyLimited) return { addBytes, release: none };
    const slot = this.limiter.acquireDownload(client.ip);
    rejectOver(slot.verdict);
    return { wrap: (body) => onStreamEnd(body, slot.release), release: slot.release, addBytes };
  }

  /** 401 with a Bearer challenge pointing at ferry's own token service. */
  challenge(request: Request, scope?: string, why = "authentication required"): RegistryError {
    const params: Record<string, string> = { realm: `${publicBase(request, this.config)}/token`, service: this.config.auth?.service ?? "ferry" };
    if (scope) params.scope = scope;
    return new RegistryError("UNAUTHORIZED", why, { headers: { "WWW-Authenticate": formatBearerChallenge(params) } });
  }

  /** For /ui, /api and /metrics: an htpasswd user or a static token (Basic or Bearer). */
  async admin(request: Request): Promise<boolean> {
    if (!this.authenticator) return true;
    const p = await this.authenticator.identify(request.headers.get("authorization"));
    return "kind" in p && (p.kind === "user" || p.kind === "token");
  }
}

function rejectOver(verdict: LimitVerdict): void {
  if (!verdict.ok) throw new RegistryError("TOOMANYREQUESTS", verdict.message, { headers: { "Retry-After": String(verdict.retryAfterSeconds) } });
}

/** The URL clients reach this mirror at: server.public_url, else the request's own. */
export function publicBase(request: Request, config: Config): string {
  if (config.server.publicUrl) return config.server.publicUrl;
  const url = new URL(request.url);
  const proto = request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() || url.protocol.replace(":", "");
  const host = request.headers.get("x-forwarded-host")?.split(",")[0]?.trim() || request.headers.get("host") || url.host;
  return `${proto}://${host}`;
}
