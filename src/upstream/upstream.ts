// A registry's upstream tiers: its endpoints in order (the direct registry first, then
// secondary mirrors such as a relay). A request goes to the first healthy endpoint and
// falls through to the next on 429, 5xx, network errors, timeouts and HTML (non-registry)
// 401/403 pages. Endpoints that are cooling down are skipped without being asked; see health.ts.
import type { EndpointConfig, RegistryConfig } from "../config/config.ts";
import type { Logger } from "../observe/logger.ts";
import type { Metrics } from "../observe/metrics.ts";
import { TokenCache } from "./auth.ts";
import { Bandwidth } from "../shared/bandwidth.ts";
import { Endpoint, type UpstreamRequest } from "./endpoint.ts";
import { failureFrom, isFailoverStatus, UpstreamError, type UpstreamFailure } from "./errors.ts";
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
  /** max_bandwidth: one bucket per endpoint, shared by all of its blob downloads. */
  private readonly bandwidth = new Map<Endpoint, Bandwidth>();

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
        if (config.maxBandwidth !== undefined) this.bandwidth.set(e, new Bandwidth(config.maxBandwidth));
      }
      return e;
    };
    this.endpoints = registry.endpoints.map(endpointFor);
    this.blobEndpoints = (registry.blobEndpoints ?? registry.endpoints).map(endpointFor);
  }

  /**
   * The first usable answer, from the first tier that is not resting. A registry's own
   * answer (2xx, 3xx, 404, a JSON 401/403…) is returned as is; 408, 429, 5xx, and a
   * 401/403 that is not the registry's error JSON fail over to the next tier. When every
   * tier fails, the most useful failure is thrown (see mostUseful).
   *
   * One deadline (the endpoint's timeout) covers each tier's answer including a small
   * body: manifests, tag lists, tokens and error bodies arrive buffered, so a body that
   * stalls after its headers is that tier's timeout. Blob bodies stream (stall_timeout).
   *
   * `skip` leaves out endpoints (a resume passes over the one that just broke). `ifAllResting` says what to
   * do when every tier rests: "probe" asks those that are not rate-limited anyway (a miss
   * has no other way to an answer), "fail" asks none (the caller holds a cached copy and
   * serves it at once: an outage costs one timeout per cooldown window, not per pull).
   */
  async request(req: UpstreamRequest, purpose: Purpose = "manifest", skip: Endpoint | readonly Endpoint[] = [], ifAllResting: "probe" | "fail" = "probe"): Promise<UpstreamResponse> {
    const skipped = Array.isArray(skip) ? skip : [skip];
    const tiers = (purpose === "blob" ? this.blobEndpoints : this.endpoints).filter((e) => !skipped.includes(e));
    const failures: UpstreamError[] = [];
    let asked = 0;
    for (const endpoint of tiers) {
      // A probe slot is taken only for the tier about to be asked, and given back by ask().
      if (!endpoint.health.tryAcquire()) continue;
      asked++;
      const answer = await this.ask(endpoint, req, purpose, true);
      if ("response" in answer) return answer;
      failures.push(answer.failed);
    }
    if (asked === 0 && ifAllResting === "probe") {
      for (const endpoint of tiers.filter((e) => e.health.rateLimitedFor() === 0)) {
        const answer = await this.ask(endpoint, req, purpose, false);
        if ("response" in answer) return answer;
        failures.push(answer.failed);
      }
    }
    throw this.mostUseful(failures, tiers);
  }

  /** One tier, under one deadline; its health is updated and a probe slot it holds given back on every path. */
  private async ask(endpoint: Endpoint, req: UpstreamRequest, purpose: Purpose, holdsSlot: boolean): Promise<UpstreamResponse | { failed: UpstreamError }> {
    const started = performance.now();
    const labels = { registry: this.registry.name, endpoint: endpoint.url };
    const deadline = new AbortController();
    // Armed once the endpoint gives the request a place: a wait behind max_concurrent is not the tier's time.
    let timer: Timer | undefined;
    const armDeadline = () => (timer ??= setTimeout(() => deadline.abort(), endpoint.config.timeoutMs));
    let phase: "headers" | "body" = "headers";
    let failed: UpstreamError;
    try {
      const streamed = await endpoint.request({ ...req, signal: req.signal ? AbortSignal.any([req.signal, deadline.signal]) : deadline.signal }, armDeadline);
      phase = "body";
      this.metrics?.upstreamDuration.observe({ ...labels, method: req.method }, (performance.now() - started) / 1000);
      this.metrics?.upstreamResponses.inc({ ...labels, status: String(streamed.status) });
      this.log.debug({ upstream: endpoint.url, method: req.method, path: req.path, status: streamed.status, ms: Math.round(performance.now() - started) }, "upstream request");
      // Only a blob's own bytes stream; everything else is read here, within the deadline.
      const response = purpose === "blob" && streamed.status < 400 ? streamed : await buffered(streamed);
      const failure = await tierFailure(response);
      if (!failure) {
        // A 404 or a JSON 401 is an answer, not a sign of trouble; only 2xx/3xx prove health.
        if (response.status < 400) endpoint.health.recordSuccess();
        return { response, endpoint };
      }
      failed = new UpstreamError(endpoint.url, failure);
      if (failure.kind === "status" && failure.status === 429) {
        this.metrics?.upstreamRateLimited.inc(labels);
        const cooldownMs = endpoint.health.recordRateLimit(rateLimitCooldownMs(response.headers, failure.retryAfterSeconds), failed.message);
        // The client is told the wait ferry applies, whether or not upstream said one.
        failed = new UpstreamError(endpoint.url, { ...failure, retryAfterSeconds: failure.retryAfterSeconds ?? Math.ceil(cooldownMs / 1000) });
      } else {
        endpoint.health.recordFailure(failed.message);
      }
    } catch (error) {
      if (deadline.signal.aborted && !req.signal?.aborted) failed = new UpstreamError(endpoint.url, { kind: "timeout", phase });
      else if (error instanceof UpstreamError) failed = error;
      else throw error;
      // No place among its max_concurrent: a local limit, so the next tier is asked and this one is not blamed.
      const queued = failed.failure.kind === "timeout" && failed.failure.phase === "queued";
      if (!queued) {
        if (phase === "headers") this.metrics?.upstreamResponses.inc({ ...labels, status: "0" });
        endpoint.health.recordFailure(failed.message);
      }
    } finally {
      clearTimeout(timer);
      if (holdsSlot) endpoint.health.release();
    }
    this.metrics?.upstreamFallbacks.inc(labels);
    this.log.warn({ registry: this.registry.name, upstream: endpoint.url, path: req.path, error: failed.message }, "upstream tier failed; trying next");
    return { failed };
  }

  /**
   * The failure worth telling the client when no tier answered: a rate limit (with the
   * shortest wait until a tier is free, resting tiers included) beats a timeout, which
   * beats an upstream error status, which beats a network error (a dead fallback tier's
   * ECONNREFUSED says least). Within a kind, the earliest tier's.
   */
  private mostUseful(failures: UpstreamError[], tiers: Endpoint[]): UpstreamError {
    const waits = [
      ...failures.flatMap((e) => (e.failure.kind === "status" && e.failure.status === 429 ? [(e.failure.retryAfterSeconds ?? 0) * 1000] : [])),
      ...tiers.map((e) => e.health.rateLimitedFor()).filter((ms) => ms > 0),
    ];
    if (waits.length > 0) {
      const limited = failures.find((e) => e.failure.kind === "status" && e.failure.status === 429);
      const base = limited?.failure.kind === "status" ? limited.failure : { kind: "status" as const, status: 429, code: "TOOMANYREQUESTS", message: "every upstream tier is rate-limited; cooling down" };
      return new UpstreamError(limited?.endpoint ?? tiers[0]?.url ?? this.registry.name, { ...base, retryAfterSeconds: Math.max(1, Math.ceil(Math.min(...waits) / 1000)) });
    }
    const rank = (e: UpstreamError) => (e.failure.kind === "timeout" ? 0 : e.failure.kind === "status" ? 1 : 2);
    const best = [...failures].sort((a, b) => rank(a) - rank(b))[0];
    if (best) return best;
    const resting = tiers.map((e) => e.health.cooldown()?.until ?? 0).filter((t) => t > 0);
    const next = resting.length ? ` (next attempt in ${Math.ceil((Math.min(...resting) - Date.now()) / 1000)}s)` : "";
    return new UpstreamError(tiers[0]?.url ?? this.registry.name, { kind: "network", message: tiers.length ? `every upstream tier is resting after failures${next}` : "no endpoints" });
  }

  /** A blob body from `endpoint`, paced by its max_bandwidth (manifests are never shaped). */
  shapeBlobBody(endpoint: Endpoint, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    return this.bandwidth.get(endpoint)?.shape(body) ?? body;
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

/** Small bodies are read whole (bounded): the caller then never waits on the network. */
const SMALL_BODY_LIMIT = 16 * 1024 * 1024;

async function buffered(response: Response): Promise<Response> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > SMALL_BODY_LIMIT) {
        await response.body.cancel().catch(() => {});
        throw new UpstreamError(response.url || "upstream", { kind: "network", message: `answer larger than ${SMALL_BODY_LIMIT} bytes` });
      }
      chunks.push(chunk);
    }
  }
  const body = size === 0 ? null : Buffer.concat(chunks, size);
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/** Why a (buffered, unless a 2xx/3xx blob) answer counts against its tier, if it does. */
async function tierFailure(response: Response): Promise<UpstreamFailure | undefined> {
  const status = response.status;
  const verdictStatus = status === 401 || status === 403;
  if (!isFailoverStatus(status) && !verdictStatus) return undefined;
  const failure = failureFrom(status, response.headers, await response.clone().text());
  // A 401/403 the registry wrote itself (its error JSON) is its verdict; an HTML page in
  // front of it is the network's (Cloudflare's "Just a moment…"): try the next tier.
  if (verdictStatus && !(failure.kind === "status" && failure.foreign)) return undefined;
  return failure;
}
