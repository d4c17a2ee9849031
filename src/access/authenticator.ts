// Who a request is: anonymous, an htpasswd user, a static token, or (for passthrough
// registries) a client presenting its own upstream credentials. Ferry's bearer tokens
// carry the repositories they were issued for and expire quickly.
import { LRUCache } from "lru-cache";
import type { AuthSettings } from "../config/config.ts";
import { timingSafeEqual } from "node:crypto";
import { credentialKey, type Credentials } from "../shared/credentials.ts";
import { verifyPassword, type Htpasswd } from "./htpasswd.ts";
import { TokenSigner, type TokenClaims } from "./tokens.ts";

export interface Principal {
  kind: "anonymous" | "user" | "token" | "upstream";
  name: string;
  /** Repository names this principal may pull; undefined = any. */
  access?: ReadonlySet<string>;
  /** Upstream credentials to use and to check with, for passthrough registries. */
  upstream?: Credentials;
  /** Basic credentials ferry doesn't know: not logged in, and not exempt from limits, until an upstream accepts them. */
  unverified?: true;
}

/** Around each password check: `before` may refuse (throws) before any hashing; `failed` records a wrong one. */
export interface LoginGuard {
  before(username: string): Promise<void>;
  failed(username: string): void;
}

export const ANONYMOUS: Principal = { kind: "anonymous", name: "" };

export type Identified = Principal | { invalid: string };

/** How long a verified password is remembered (bcrypt is deliberately slow). */
const VERIFIED_TTL_MS = 60_000;

export class Authenticator {
  readonly signer: TokenSigner;
  /** Successful logins by a hash of user:password, so Basic on every request costs one bcrypt a minute. */
  private readonly verified = new LRUCache<string, Principal>({ max: 10_000, ttl: VERIFIED_TTL_MS });
  /** Wrong passwords, likewise: the same wrong one again costs no bcrypt (and is no new guess). */
  private readonly rejected: LRUCache<string, true>;

  /** `upstreamLogins`: some registry has passthrough_auth, so unknown Basic credentials may be upstream ones. */
  constructor(
    readonly settings: AuthSettings,
    secret: string,
    private readonly users: Htpasswd,
    private readonly upstreamLogins = false,
    rejectedTtlMs = VERIFIED_TTL_MS,
  ) {
    this.signer = new TokenSigner(secret);
    this.rejected = new LRUCache({ max: 10_000, ttl: rejectedTtlMs });
  }

  /** The principal an Authorization header names (anonymous without one). */
  async identify(authorization: string | null, guard?: LoginGuard): Promise<Identified> {
    if (!authorization) return ANONYMOUS;
    const space = authorization.indexOf(" ");
    const scheme = authorization.slice(0, space).toLowerCase();
    const value = authorization.slice(space + 1).trim();
    if (scheme === "bearer") {
      if (this.isStaticToken(value)) return { kind: "token", name: "static-token" };
      const claims = this.signer.verify(value);
      return claims ? this.fromClaims(claims) : { invalid: "invalid or expired token" };
    }
    if (scheme === "basic") {
      const decoded = Buffer.from(value, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon < 0) return { invalid: "malformed Basic credentials" };
      const [username, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
      const login = await this.login(username, password, guard);
      if (login) return login;
      if (!this.upstreamLogins) return { invalid: "invalid username or password" };
      // Unknown Basic credentials may still be upstream credentials (passthrough): only an
      // upstream can vouch for them, per registry.
      return { kind: "upstream", name: username, upstream: { username, password }, unverified: true };
    }
    return { invalid: `unsupported authorization scheme "${scheme}"` };
  }

  /** htpasswd user, or any user name with a static token as password. */
  async login(username: string, password: string, guard?: LoginGuard): Promise<Principal | undefined> {
    if (this.isStaticToken(password)) return { kind: "token", name: username || "static-token" };
    const key = credentialKey({ username, password });
    const known = this.verified.get(key);
    if (known) return known;
    if (this.rejected.has(key)) return undefined;
    await guard?.before(username);
    if (!(await verifyPassword(this.users, username, password))) {
      this.rejected.set(key, true);
      // With passthrough, a name htpasswd doesn't know may be an upstream login: it fails
      // only once the upstream refuses it too (the caller reports that).
      if (!this.upstreamLogins || this.users.has(username)) guard?.failed(username);
      return undefined;
    }
    const principal: Principal = { kind: "user", name: username };
    this.verified.set(key, principal);
    return principal;
  }

  issue(principal: Principal, repositories: string[], now = Date.now()): { token: string; expiresIn: number; issuedAt: string } {
    const expiresIn = Math.round(this.settings.tokenTtlMs / 1000);
    const claims: TokenClaims = { sub: principal.kind === "anonymous" ? "" : principal.name, access: repositories, iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + expiresIn };
    if (principal.kind === "upstream" && principal.upstream) claims.up = this.signer.seal(JSON.stringify(principal.upstream));
    return { token: this.signer.sign(claims), expiresIn, issuedAt: new Date(now).toISOString() };
  }

  private fromClaims(claims: TokenClaims): Principal {
    const access = new Set(claims.access);
    if (claims.up) {
      const opened = this.signer.open(claims.up);
      const upstream = opened ? (JSON.parse(opened) as Credentials) : undefined;
      return { kind: "upstream", name: claims.sub, access, upstream };
    }
    return { kind: claims.sub ? "user" : "anonymous", name: claims.sub, access };
  }

  private isStaticToken(value: string): boolean {
    const given = Buffer.from(value);
    return this.settings.tokens.some((t) => {
      const known = Buffer.from(t);
      return known.length === given.length && timingSafeEqual(known, given);
    });
  }
}
