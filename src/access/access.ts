// Access control on the request path, in one place: User-Agent block list, per-client
// limits, authentication, per-registry allow/deny lists, anonymous access and
// passthrough checks. The registry API asks; this answers with a client or an OCI error.
import type { SharedRedis } from "../redis/redis-client.ts";
import type { Config, RegistryConfig } from "../config/config.ts";
import { formatBearerChallenge } from "../protocol/challenge.ts";
import { RegistryError } from "../protocol/errors.ts";
import { withLibraryPrefix } from "../protocol/names.ts";
import { BandwidthPool } from "../shared/bandwidth.ts";
import { requestUrl } from "../protocol/request-url.ts";
import { ANONYMOUS, Authenticator, type Identified, type LoginGuard, type Principal } from "./authenticator.ts";
import { ClientIpResolver } from "./client-ip.ts";
import type { Htpasswd } from "./htpasswd.ts";
import { onStreamEnd, RateLimiter, type LimiterCounters, type LimitVerdict, type PageBudget } from "./limits.ts";
import { PassthroughChecker, type UpstreamCredentialCheck } from "./passthrough.ts";
import { RepositoryPolicy, userAgentBlocker } from "./policy.ts";

export interface Client {
  ip: string;
  principal: Principal;
  exempt: boolean;
}

export class AccessControl {
  readonly authenticator: Authenticator | undefined;
  readonly limiter: RateLimiter;
  /** [limits] bandwidth: one bucket per client address (per replica). */
  private readonly delivery: BandwidthPool | undefined;
  private readonly ips: ClientIpResolver;
  private readonly policies = new Map<string, RepositoryPolicy>();
  private readonly blocked: (ua: string | null) => boolean;
  private readonly passthrough: PassthroughChecker;

  constructor(
    private readonly config: Config,
    upstream: UpstreamCredentialCheck,
    auth: { secret: string; users: Htpasswd } | undefined,
    redis?: SharedRedis,
    limiterCounters?: LimiterCounters,
  ) {
    const upstreamLogins = config.registries.some((r) => r.passthroughAuth);
    this.authenticator = config.auth && auth ? new Authenticator(config.auth, auth.secret, auth.users, upstreamLogins, config.limits.loginFailures.windowMs) : undefined;
    this.limiter = new RateLimiter(config.limits, redis, Date.now, limiterCounters);
    this.delivery = config.limits.bandwidth === undefined ? undefined : new BandwidthPool(config.limits.bandwidth);
    this.ips = new ClientIpResolver(config.limits.trustedProxies);
    for (const r of config.registries) this.policies.set(r.name, new RepositoryPolicy(r.allow, r.deny));
    this.blocked = userAgentBlocker(config.limits.blockUserAgents);
    this.passthrough = new PassthroughChecker(upstream);
  }

  /** Everything decided before routing: who, from where, and whether they may ask at all. */
  async admit(request: Request, peer: string): Promise<Client> {
    if (this.blocked(request.headers.get("user-agent"))) throw new RegistryError("DENIED", "this client is not allowed to use this mirror");
    const ip = this.clientIp(request, peer);
    let principal: Principal = ANONYMOUS;
    // A password to hash is charged to the request budget first: limits come before bcrypt.
    let charged = false;
    const exemptAddress = this.limiter.isExemptAddress(ip);
    if (this.authenticator) {
      const identified = await this.identify(request, ip, async () => {
        if (exemptAddress) return;
        charged = true;
        rejectOver(await this.limiter.request(ip));
      });
      if ("invalid" in identified) throw this.challenge(request, undefined, identified.invalid);
      principal = identified;
    }
    const exempt = exemptAddress || this.limiter.isExempt(ip, isVerified(principal));
    if (!exempt && !charged) rejectOver(await this.limiter.request(ip));
    return { ip, principal, exempt };
  }

  /**
   * `/v2/` itself: with auth on, only a verified login or a token ferry issued gets 200;
   * anything else is challenged (that is how `docker login` starts, and how a client that
   * checks its password here learns it was wrong).
   */
  base(request: Request, client: Client): void {
    const p = client.principal;
    if (!this.authenticator) return;
    if (p.unverified || (p.kind === "anonymous" && !request.headers.get("authorization"))) throw this.challenge(request);
  }

  /** The client's address: the peer, or what a trusted proxy says in X-Forwarded-For. */
  clientIp(request: Request, peer: string): string {
    return this.ips.resolve(peer, request.headers.get("x-forwarded-for"));
  }

  /** Who the Authorization header names; failed-login back-off and `beforeHash` come before any bcrypt. */
  async identify(request: Request, ip: string, beforeHash?: () => Promise<void>): Promise<Identified> {
    return this.authenticator!.identify(request.headers.get("authorization"), this.loginGuard(ip, beforeHash));
  }

  /** A login an upstream refused (passthrough credentials at /token): counts like a wrong password. */
  loginFailed(ip: string, username: string): void {
    void this.limiter.loginFailed(ip, username);
  }

  /** The per-minute budget of /token, the operator pages or /v1/*: throws 429 when used up. */
  async limitPage(request: Request, peer: string, budget: PageBudget): Promise<void> {
    const ip = this.clientIp(request, peer);
    if (!this.limiter.isExemptAddress(ip)) rejectOver(await this.limiter.request(ip, budget));
  }

  private loginGuard(ip: string, beforeHash?: () => Promise<void>): LoginGuard {
    return {
      before: async (username) => {
        rejectOver(await this.limiter.loginAllowed(ip, username));
        await beforeHash?.();
      },
      failed: (username) => this.loginFailed(ip, username),
    };
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
      if (credentials && p.unverified) this.loginFailed(client.ip, p.name); // refused upstream too: a failed login
      if (!credentials) throw this.challenge(request, scope, `${registry.name}/${repository} requires logging in with your upstream credentials`);
      throw new RegistryError("DENIED", `your upstream credentials do not allow pulling ${registry.name}/${repository}`);
    }
    return { credentials };
  }

  /**
   * Limits for a blob download: byte budget, a concurrency slot and the client's delivery
   * bandwidth (the body is paced, shared fairly by the client's concurrent downloads).
   * `wrap` hands the slot to a body (released when it ends); every answer without one must
   * call `release`. `paced`: the body goes out in bandwidth slices.
   */
  async admitDownload(client: Client): Promise<{ wrap?: (body: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>; paced: boolean; release: () => void; addBytes: (n: number) => void }> {
    const none = () => {};
    if (client.exempt) return { addBytes: none, release: none, paced: false };
    rejectOver(await this.limiter.bytesLeft(client.ip));
    const addBytes = (n: number) => void this.limiter.addBytes(client.ip, n);
    const delivery = this.delivery;
    const pace = delivery ? (body: ReadableStream<Uint8Array>) => delivery.shape(client.ip, body) : (body: ReadableStream<Uint8Array>) => body;
    const paced = delivery !== undefined;
    if (!this.limiter.concurrencyLimited) return { addBytes, release: none, paced, ...(delivery && { wrap: pace }) };
    const slot = this.limiter.acquireDownload(client.ip);
    rejectOver(slot.verdict);
    return { wrap: (body) => onStreamEnd(pace(body), slot.release), release: slot.release, addBytes, paced };
  }

  /** 401 with a Bearer challenge pointing at ferry's own token service. */
  challenge(request: Request, scope?: string, why = "authentication required"): RegistryError {
    const params: Record<string, string> = { realm: `${publicBase(request, this.config)}/token`, service: this.config.auth?.service ?? "ferry" };
    if (scope) params.scope = scope;
    return new RegistryError("UNAUTHORIZED", why, { headers: { "WWW-Authenticate": formatBearerChallenge(params) } });
  }

  /**
   * The WWW-Authenticate for a 401 that came from upstream: ferry's own Bearer challenge
   * when [auth] is on (log in to ferry), else a Basic one (credentials for the mirror host).
   */
  loginChallenge(request: Request, scope?: string): string {
    if (this.authenticator) return this.challenge(request, scope).headers["WWW-Authenticate"]!;
    return 'Basic realm="ferry"';
  }

  /** For /ui, /api and /metrics: an htpasswd user or a static token (Basic or Bearer). */
  async admin(request: Request, peer: string): Promise<boolean> {
    if (!this.authenticator) return true;
    const p = await this.identify(request, this.clientIp(request, peer));
    return "kind" in p && (p.kind === "user" || p.kind === "token");
  }
}

/** Checked by ferry: htpasswd, a static token, or a token ferry issued (after checking). Claimed upstream credentials are not. */
function isVerified(p: Principal): boolean {
  return p.kind !== "anonymous" && !p.unverified;
}

function rejectOver(verdict: LimitVerdict): void {
  if (!verdict.ok) throw new RegistryError("TOOMANYREQUESTS", verdict.message, { headers: { "Retry-After": String(verdict.retryAfterSeconds) } });
}

/** The URL clients reach this mirror at: server.public_url, else the request's own. */
export function publicBase(request: Request, config: Config): string {
  if (config.server.publicUrl) return config.server.publicUrl;
  const url = requestUrl(request);
  const proto = request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() || url.protocol.replace(":", "");
  const host = request.headers.get("x-forwarded-host")?.split(",")[0]?.trim() || request.headers.get("host") || url.host;
  return `${proto}://${host}`;
}
