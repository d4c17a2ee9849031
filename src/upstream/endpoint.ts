// One upstream endpoint: a base URL with its credentials and timeouts. It does the
// registry token flow and follows blob redirects itself, so clients never talk to
// the upstream's auth host or CDN.
import type { EndpointConfig } from "../config/config.ts";
import { parseChallenges, type Challenge } from "../protocol/challenge.ts";
import { basicAuthorization, fetchToken, pullScope, TokenCache, TokenFetchError, tokenCacheKey, type Credentials, type TokenRequestOptions } from "./auth.ts";
import { UpstreamError } from "./errors.ts";
import type { EndpointHealth } from "./health.ts";
import { pinTarget, systemResolver, TargetRefused, type PinnedTarget, type Resolver } from "./pinned-target.ts";

export interface UpstreamRequest {
  method: "GET" | "HEAD";
  /** Path below the endpoint, e.g. "/v2/library/alpine/manifests/latest". */
  path: string;
  /** Repository the request is about: it decides the token scope. */
  repository?: string;
  accept?: readonly string[];
  range?: string;
  signal?: AbortSignal;
  /** The client's own upstream credentials (passthrough_auth) instead of the endpoint's. */
  credentials?: Credentials;
}

const MAX_REDIRECTS = 5;

export class Endpoint {
  /** The last auth challenge this endpoint sent, so later requests skip the 401 round trip. */
  private challenge: Challenge | undefined;
  private readonly credentials: Credentials | undefined;

  constructor(
    readonly config: EndpointConfig,
    private readonly tokens: TokenCache,
    readonly health: EndpointHealth,
    private readonly resolve: Resolver = systemResolver,
  ) {
    this.credentials = config.username !== undefined && config.password !== undefined ? { username: config.username, password: config.password } : undefined;
  }

  get url(): string {
    return this.config.url;
  }

  /**
   * Sends the request and returns the upstream's response, whatever its status; `onPlace`
   * runs once it has one of the endpoint's max_concurrent places (at once without a limit).
   * Throws UpstreamError for network errors and timeouts, TokenFetchError when auth fails,
   * and (like fetch) the signal's reason once `req.signal` aborts.
   */
  async request(req: UpstreamRequest, onPlace?: () => void): Promise<Response> {
    const release = await this.slot(req.signal);
    onPlace?.(); // the tier's own time starts here: the wait for a place is ferry's
    try {
      return await this.requestNow(this.forThisEndpoint(req));
    } finally {
      release();
    }
  }

  /**
   * The request as this endpoint's URL scheme wants it: a secondary mirror serving many
   * registries on one host takes a repository prefix (/v2/docker.io/library/alpine/…, also
   * in the token scope) or containerd's ?ns=ghcr.io.
   */
  private forThisEndpoint(req: UpstreamRequest): UpstreamRequest {
    const { repositoryPrefix: prefix, ns } = this.config;
    if (!prefix && !ns) return req;
    return { ...req, path: endpointPath(req.path, prefix, ns), repository: prefix && req.repository ? `${prefix}/${req.repository}` : req.repository };
  }

  private active = 0;
  private readonly waiting: (() => void)[] = [];

  /**
   * A place among this endpoint's concurrent requests (max_concurrent), so a burst of
   * clients cannot get this server's address banned upstream. Waits at most the
   * endpoint's timeout, and no longer than the request's signal (its deadline, its client):
   * a request that stops waiting leaves the queue, as fetch would, with the signal's reason.
   */
  private async slot(signal: AbortSignal | undefined): Promise<() => void> {
    const max = this.config.maxConcurrent;
    if (max === undefined) return () => {};
    if (this.active >= max) {
      signal?.throwIfAborted();
      let wake!: () => void;
      const granted = new Promise<void>((resolve) => (wake = resolve));
      this.waiting.push(wake);
      let timer: Timer | undefined;
      let onAbort = () => {};
      const gaveUp = new Promise<"timeout" | "aborted">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.config.timeoutMs);
        onAbort = () => resolve("aborted");
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      const outcome = await Promise.race([granted.then(() => "granted" as const), gaveUp]);
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (outcome !== "granted") {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        else this.releaseSlot(); // granted just as we gave up: pass it on
        if (outcome === "aborted") throw signal!.reason;
        throw new UpstreamError(this.config.url, { kind: "timeout", phase: "queued" });
      }
    } else {
      this.active++;
    }
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.releaseSlot();
      }
    };
  }

  private releaseSlot(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.active--;
  }

  private async requestNow(req: UpstreamRequest): Promise<Response> {
    const credentials = req.credentials ?? this.credentials;
    let authorization = await this.authorization(req.repository, credentials, false, req.signal);
    let { response, from } = await this.send(req, authorization);
    if (response.status === 401) {
      if (from.origin !== new URL(this.config.url).origin) {
        // A CDN's (or any redirect target's) challenge is not the registry's: answering it
        // would hand the registry's credentials to whoever the redirect named.
        await response.body?.cancel();
        throw new UpstreamError(this.config.url, { kind: "network", message: `redirect target ${from.host} answered 401; only the registry's own challenges are answered` });
      }
      const challenge = parseChallenges(response.headers.get("www-authenticate")).find((c) => c.scheme === "bearer" || c.scheme === "basic");
      if (challenge) {
        const fresh = await this.authorization(req.repository, credentials, true, req.signal, challenge);
        // Kept only once its realm answered: a refused realm must not block the 401 that may fix it.
        this.challenge = challenge;
        if (fresh && fresh !== authorization) {
          await response.body?.cancel();
          authorization = fresh;
          ({ response } = await this.send(req, authorization));
        }
      }
    }
    return response;
  }

  /**
   * `signal`: the request's deadline, which its wait for a token is part of. The token fetch
   * itself may be shared with other requests: it runs under the endpoint's timeout and stops
   * only when none of them waits any more (auth.ts).
   */
  private async authorization(repository: string | undefined, credentials: Credentials | undefined, fresh: boolean, signal: AbortSignal | undefined, fromChallenge?: Challenge): Promise<string | undefined> {
    const challenge = fromChallenge ?? this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === "basic") return credentials ? basicAuthorization(credentials) : undefined;
    // A challenge's own scope wins: it names exactly what the upstream wants.
    const scope = fromChallenge?.params.scope ?? (repository ? pullScope(repository) : "");
    const key = tokenCacheKey(challenge, scope, credentials);
    try {
      const token = await this.tokens.get(key, (shared) => fetchToken(challenge, scope, credentials, this.tokenRequestOptions(challenge, shared)), fresh, signal);
      return `Bearer ${token.value}`;
    } catch (error) {
      if (error instanceof TokenFetchError && error.status === undefined) {
        throw new UpstreamError(this.config.url, { kind: "network", message: error.message });
      }
      throw error;
    }
  }

  /**
   * Extra headers (a relay's secret) go to the token realm only if it is this endpoint's
   * own origin. A realm elsewhere is a target the registry names: pinned and, unless
   * allow_private_redirects, refused on a non-public address; one on the endpoint's own
   * host is the registry's own token service (the operator named that host).
   */
  private tokenRequestOptions(challenge: Challenge, signal: AbortSignal): TokenRequestOptions {
    let sameOrigin = false;
    try {
      sameOrigin = new URL(challenge.params.realm ?? "").origin === new URL(this.config.url).origin;
    } catch {}
    const ownHost = new URL(this.config.url).hostname;
    const pin = async (realm: URL): Promise<PinnedTarget> => {
      if (realm.hostname === ownHost && (realm.protocol === "http:" || realm.protocol === "https:")) return { url: realm, init: { headers: {} } };
      return pinTarget(realm, this.config.allowPrivateRedirects, this.resolve);
    };
    return { timeoutMs: this.config.timeoutMs, signal, userAgent: this.config.userAgent, proxy: this.config.proxy, headers: sameOrigin ? this.config.headers : undefined, pin };
  }

  /**
   * One request with manual redirects; the headers timeout covers the whole chain.
   * Returns the last response and the URL that gave it.
   */
  private async send(req: UpstreamRequest, authorization: string | undefined): Promise<{ response: Response; from: URL }> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.config.timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout.signal]) : timeout.signal;
    let url = new URL(this.config.url + req.path);
    // The endpoint itself is fetched by name (the operator chose it); redirect targets are pinned.
    let target: PinnedTarget = { url, init: { headers: {} } };
    const origin = url.origin;
    try {
      for (let hop = 0; ; hop++) {
        const headers: Record<string, string> = { "User-Agent": this.config.userAgent, "Accept-Encoding": "identity", ...(url.origin === origin ? this.config.headers : {}) };
        if (req.accept?.length) headers.Accept = req.accept.join(", ");
        if (req.range) headers.Range = req.range;
        // The registry's credentials go to the registry only, never to a CDN it redirects to.
        if (authorization && url.origin === origin) headers.Authorization = authorization;
        const response = await fetch(target.url, { method: req.method, headers: { ...headers, ...target.init.headers }, tls: target.init.tls, redirect: "manual", signal, decompress: false, proxy: this.config.proxy });
        const location = response.headers.get("location");
        if (response.status >= 300 && response.status < 400 && location) {
          await response.body?.cancel();
          if (hop >= MAX_REDIRECTS) throw new UpstreamError(this.config.url, { kind: "network", message: "too many redirects" });
          const next = new URL(location, url);
          try {
            target = await pinTarget(next, this.config.allowPrivateRedirects, this.resolve);
          } catch (error) {
            if (!(error instanceof TargetRefused)) throw error;
            throw new UpstreamError(this.config.url, { kind: "network", message: `redirect to ${error.message} refused` });
          }
          url = next;
          continue;
        }
        return { response, from: url };
      }
    } catch (error) {
      if (error instanceof UpstreamError) throw error;
      if (timeout.signal.aborted) throw new UpstreamError(this.config.url, { kind: "timeout", phase: "headers" });
      if (req.signal?.aborted) throw error;
      throw new UpstreamError(this.config.url, { kind: "network", message: (error as Error).message });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * A registry API path ("/v2/library/alpine/manifests/latest?n=1") for an endpoint with a
 * repository prefix and/or an ns parameter. A path that already carries the prefix is a
 * next-page Link this endpoint sent, and is left alone. The query is kept byte for byte.
 */
export function endpointPath(path: string, prefix?: string, ns?: string): string {
  const q = path.indexOf("?");
  let pathname = q < 0 ? path : path.slice(0, q);
  let query = q < 0 ? [] : path.slice(q + 1).split("&").filter(Boolean);
  if (prefix && pathname.startsWith("/v2/") && pathname !== "/v2/" && !pathname.startsWith(`/v2/${prefix}/`)) pathname = `/v2/${prefix}/${pathname.slice(4)}`;
  if (ns) query = [...query.filter((p) => !p.startsWith("ns=")), `ns=${encodeURIComponent(ns)}`];
  return query.length ? `${pathname}?${query.join("&")}` : pathname;
}
