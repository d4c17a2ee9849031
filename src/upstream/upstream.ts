// A registry's upstream tiers: its endpoints in order (the direct registry first, then
// secondary mirrors such as a relay). A request goes to the first healthy endpoint and
// falls through to the next on 429, 5xx, network errors and timeouts. Endpoints that
// are cooling down are skipped without being asked; see health.ts.
import type { EndpointConfig, RegistryConfig } from "../config/config.ts";
import type { Logger } from "../observe/logger.ts";
import type { Metrics } from "../observe/metrics.ts";
import { TokenCache, TokenFetchError, type Credentials } from "./auth.ts";
import { Endpoint, type UpstreamRequest } from "./endpoint.ts";
import { failureFromResponse, isFailoverStatus, UpstreamError } from "./errors.ts";
import { EndpointHealth, rateLimitCooldownMs, type HealthSnapshot } from "./health.ts";

export type Purpose = "manifest" | "blob";

export interface UpstreamResponse {
  response: Response;
  endpoint: Endpoint;
}

export interface EndpointStatus extends HealthSnapshot {
  url: string;
  tier: number;
  usedFor: Purpose[];
}

export class Upstream {
  /** Tiers for manifests, tags and (unless blob_endpoints is set) blobs. */
  readonly endpoints: Endpoint[];
  readonly blobEndpoints: Endpoint[];

  constructor(
    readonly registry: RegistryConfig,
    tokens: TokenCache,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    /** Health records that outlive a config reload: given the URL and how to make a new one. */
    healthOf: (url: string, create: () => EndpointHealth) => EndpointHealth = (_url, create) => create(),
  ) {
    // One Endpoint (and so one health record) per distinct URL, shared by both orders.
    const byUrl = new Map<string, Endpoint>();
    const endpointFor = (config: EndpointConfig) => {
      let e = byUrl.get(config.url);
      if (!e) {
        const health = healthOf(config.url, () =>
          new EndpointHealth(registry.health, (event, snapshot) =>
            log.warn({ registry: registry.name, upstream: config.url, state: snapshot.state, cooldownMs: snapshot.cooldownRemainingMs, error: snapshot.lastError }, event),
          ),
        );
        e = new Endpoint(config, tokens, health);
        byUrl.set(config.url, e);
      }
      return e;
    };
    this.endpoints = registry.endpoints.map(endpointFor);
    this.blobEndpoints = (registry.blobEndpoints ?? registry.endpoints).map(endpointFor);
  }

  /**
   * The first usable answer. Any status that is not worth failing over on (2xx, 3xx,
   * 401, 403, 404…) is returned as is; when every tier fails, the last failure is thrown.
   * `skip` leaves out an endpoint that just failed mid-body.
   */
  async request(req: UpstreamRequest, purpose: Purpose = "manifest", skip?: Endpoint): Promise<UpstreamResponse> {
    const tiers = purpose === "blob" ? this.blobEndpoints : this.endpoints;
    let candidates = tiers.filter((e) => e !== skip && e.health.tryAcquire());
    if (candidates.length === 0) {
      // Every tier is cooling down. A rate-limited one would only 429 again: say so at
      // once. Otherwise try them anyway rather than fail without asking anyone.
      const waits = tiers.map((e) => e.health.rateLimitedFor());
      if (waits.every((w) => w > 0)) {
        throw new UpstreamError(tiers[0]!.url, { kind: "status", status: 429, code: "TOOMANYREQUESTS", message: "every upstream tier is rate-limited; cooling down", retryAfterSeconds: Math.ceil(Math.min(...waits) / 1000) });
      }
      candidates = tiers.filter((e) => e.health.rateLimitedFor() === 0);
    }
    let lastError: UpstreamError | undefined;
    for (const endpoint of candidates) {
      const started = performance.now();
      const labels = { registry: this.registry.name, endpoint: endpoint.url };
      try {
        const response = await endpoint.request(req);
        this.metrics?.upstreamDuration.observe({ ...labels, method: req.method }, (performance.now() - started) / 1000);
        this.metrics?.upstreamResponses.inc({ ...labels, status: String(response.status) });
        this.log.debug({ upstream: endpoint.url, method: req.method, path: req.path, status: response.status, ms: Math.round(performance.now() - started) }, "upstream request");
        if (!isFailoverStatus(response.status)) {
          // A 404 or 401 is an answer, not a sign of trouble; only 2xx/3xx prove health.
          if (response.status < 400) endpoint.health.recordSuccess();
          else endpoint.health.release();
          return { response, endpoint };
        }
        const failure = await failureFromResponse(response);
        lastError = new UpstreamError(endpoint.url, failure);
        if (response.status === 429) this.metrics?.upstreamRateLimited.inc(labels);
        if (response.status === 429) endpoint.health.recordRateLimit(rateLimitCooldownMs(response.headers, failure.kind === "status" ? failure.retryAfterSeconds : undefined), lastError.message);
        else endpoint.health.recordFailure(lastError.message);
      } catch (error) {
        if (!(error instanceof UpstreamError)) {
          endpoint.health.release();
          throw error;
        }
        lastError = error;
        this.metrics?.upstreamResponses.inc({ ...labels, status: "0" });
        endpoint.health.recordFailure(error.message);
      }
      this.metrics?.upstreamFallbacks.inc(labels);
      this.log.warn({ registry: this.registry.name, upstream: endpoint.url, path: req.path, error: lastError.message }, "upstream tier failed; trying next");
    }
    throw lastError ?? new UpstreamError(this.registry.name, { kind: "network", message: "no endpoints" });
  }

  /**
   * Whether these credentials (undefined: anonymous) may read a repository upstream.
   * A one-tag listing is the cheapest request that needs read access (and not a pull).
   */
  async canRead(repository: string, credentials: Credentials | undefined): Promise<boolean> {
    try {
      const { response } = await this.request({ method: "GET", path: `/v2/${repository}/tags/list?n=1`, repository, credentials });
      await response.body?.cancel();
      return response.ok;
    } catch (error) {
      if (error instanceof TokenFetchError && error.status !== undefined && error.status < 500) return false;
      throw error;
    }
  }

  /** Whether the upstream's token service accepts these credentials (a `docker login` through ferry). */
  async acceptsLogin(credentials: Credentials): Promise<boolean> {
    try {
      const { response } = await this.request({ method: "GET", path: "/v2/", credentials });
      await response.body?.cancel();
      return response.ok;
    } catch (error) {
      if (error instanceof TokenFetchError && error.status !== undefined && error.status < 500) return false;
      throw error;
    }
  }

  /** A failure noticed after the response was handed out (a body that broke or stalled). */
  reportBodyFailure(endpoint: Endpoint, message: string): void {
    endpoint.health.recordFailure(message);
  }

  status(): EndpointStatus[] {
    const all = [...new Set([...this.endpoints, ...this.blobEndpoints])];
    return all.map((e) => ({
      url: e.url,
      tier: Math.max(this.endpoints.indexOf(e), this.blobEndpoints.indexOf(e)),
      usedFor: [...(this.endpoints.includes(e) ? ["manifest" as const] : []), ...(this.blobEndpoints.includes(e) ? ["blob" as const] : [])],
      ...e.health.snapshot(),
    }));
  }
}
