// Upstream token auth (the Docker registry token flow): on a Bearer challenge, ask the
// realm for a token for the scope, cache it until shortly before it expires.
import { LRUCache } from "lru-cache";
import type { SharedRedis } from "../redis/redis-client.ts";
import type { Challenge } from "../protocol/challenge.ts";
import type { PinnedTarget } from "./pinned-target.ts";
import { SingleFlight } from "../shared/single-flight.ts";
import { credentialKey, type Credentials } from "../shared/credentials.ts";
export type { Credentials };

export interface Token {
  value: string;
  expiresAt: number;
}

/** Docker's default when a token response has no expires_in. */
const DEFAULT_TOKEN_SECONDS = 60;
/** Tokens are dropped this long before they expire, so a request never carries a dead one. */
const EXPIRY_MARGIN_MS = 10_000;

/** Upstream tokens, per process and (with Redis) shared by all replicas until they expire. */
export class TokenCache {
  private readonly tokens = new LRUCache<string, Token>({ max: 10_000 });
  private readonly pending = new SingleFlight<Token>();

  constructor(private readonly redis?: SharedRedis) {}

  /**
   * A cached token, or one fetched once for all concurrent callers. `signal` (the caller's
   * deadline) ends this caller's wait only; the fetcher's signal aborts when no caller is left.
   */
  async get(key: string, fetcher: (signal: AbortSignal) => Promise<Token>, fresh = false, signal?: AbortSignal): Promise<Token> {
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expiresAt > Date.now()) return cached;
    const token = await this.pending.run(key, (shared) => this.load(key, () => fetcher(shared), fresh), signal);
    this.tokens.set(key, token);
    return token;
  }

  private async load(key: string, fetcher: () => Promise<Token>, fresh: boolean): Promise<Token> {
    // Token keys hold no secret, but are hashed to keep Redis keys short and opaque.
    const redisKey = this.redis?.key("token", new Bun.CryptoHasher("sha256").update(key).digest("hex"));
    if (this.redis && redisKey && !fresh) {
      const shared = await this.redis.try((c) => c.get(redisKey));
      if (shared) {
        const token = JSON.parse(shared) as Token;
        if (token.expiresAt > Date.now()) return token;
      }
    }
    const token = await fetcher();
    const ttl = token.expiresAt - Date.now();
    if (this.redis && redisKey && ttl > 0) await this.redis.try((c) => c.set(redisKey, JSON.stringify(token), "PX", ttl));
    return token;
  }
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function tokenCacheKey(challenge: Challenge, scope: string, credentials?: Credentials): string {
  return JSON.stringify([challenge.params.realm, challenge.params.service ?? "", scope, credentialKey(credentials)]);
}

export function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
}

export class TokenFetchError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "TokenFetchError";
  }
}

export interface TokenRequestOptions {
  timeoutMs: number;
  /** Aborts the fetch (its body too), e.g. once no request waits for the token; timeoutMs bounds it either way. */
  signal?: AbortSignal;
  userAgent: string;
  proxy?: string;
  headers?: Record<string, string>;
  /** Decides where the realm may be reached (and refuses it by throwing). */
  pin?: (realm: URL) => Promise<PinnedTarget>;
}

/**
 * GET realm?service=…&scope=… (Basic auth when there are credentials). `via.pin` decides
 * where the realm may be reached; redirects are not followed, so credentials go to the
 * realm that was checked and nowhere else.
 */
export async function fetchToken(challenge: Challenge, scope: string, credentials: Credentials | undefined, via: TokenRequestOptions): Promise<Token> {
  const realm = challenge.params.realm;
  if (!realm) throw new TokenFetchError("Bearer challenge without realm");
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new TokenFetchError(`token realm "${realm.slice(0, 100)}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TokenFetchError(`token realm refused: ${url.protocol} is not http(s)`);
  if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
  url.searchParams.append("scope", scope);
  let target: PinnedTarget = { url, init: { headers: {} } };
  if (via.pin) {
    try {
      target = await via.pin(url);
    } catch (error) {
      throw new TokenFetchError(`token realm at ${(error as Error).message} refused`);
    }
  }
  // The endpoint's own headers (a relay's secret) go along: a relay serves /token too.
  const headers: Record<string, string> = { "User-Agent": via.userAgent, ...via.headers, ...target.init.headers };
  if (credentials) headers.Authorization = basicAuthorization(credentials);
  const timeout = AbortSignal.timeout(via.timeoutMs);
  let response: Response;
  let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
  try {
    // The signal bounds the body as well as the headers.
    response = await fetch(target.url, { headers, tls: target.init.tls, redirect: "manual", signal: via.signal ? AbortSignal.any([via.signal, timeout]) : timeout, proxy: via.proxy });
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      throw new TokenFetchError(`token endpoint ${url.host} redirected (${response.status}); redirects are not followed with credentials`);
    }
    if (!response.ok) {
      await response.body?.cancel();
      // An HTML page (a CDN's challenge in front of the token service) is no verdict on the credentials.
      const verdict = !/html/i.test(response.headers.get("content-type") ?? "");
      throw new TokenFetchError(`token endpoint ${url.host} answered ${response.status}${verdict ? "" : " (an HTML page, not a token service answer)"}`, verdict ? response.status : undefined);
    }
    body = (await response.json()) as typeof body;
  } catch (error) {
    if (error instanceof TokenFetchError) throw error;
    if (error instanceof SyntaxError) throw new TokenFetchError(`token endpoint ${url.host} answered something that is not JSON`);
    throw new TokenFetchError(`token endpoint ${url.host} unreachable: ${(error as Error).message}`);
  }
  const value = body.token ?? body.access_token;
  if (!value) throw new TokenFetchError(`token endpoint ${url.host} returned no token`);
  const seconds = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
  const issuedAt = body.issued_at ? Date.parse(body.issued_at) : NaN;
  const start = Number.isNaN(issuedAt) ? Date.now() : Math.min(issuedAt, Date.now());
  return { value, expiresAt: start + seconds * 1000 - Math.min(EXPIRY_MARGIN_MS, (seconds * 1000) / 2) };
}
