// Prometheus metrics (prom-client), on a registry of ferry's own so several instances
// (tests, replicas in one process) never share counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type ServedSource = "local" | "shared" | "upstream";

export class Metrics {
  readonly registry = new Registry();
  // The per-request counters are tallied in plain maps and handed to prom-client when
  // scraped: prom-client hashes the label set on every inc(), which cost more than a
  // cached manifest's own work (bench/, scenario 2).
  private readonly requestTallies = new Tallies<"route" | "method" | "status">();
  private readonly cacheTallies = new Tallies<"kind" | "result" | "tier">();
  private readonly staleTallies = new Tallies<"registry" | "kind">();
  /** Stale answers since start, per registry and kind, for the status API and dashboard. */
  private readonly staleTotals = new Map<string, Record<string, number>>();
  private readonly httpRequests: Counter<"route" | "method" | "status"> = new Counter({
    name: "ferry_http_requests_total",
    help: "Requests answered, by API route, method and status",
    labelNames: ["route", "method", "status"],
    registers: [this.registry],
    collect: (): void => this.requestTallies.flushInto(this.httpRequests),
  });
  private readonly httpDuration = new Histogram({
    name: "ferry_http_request_duration_seconds",
    help: "Time to response headers, by API route",
    labelNames: ["route"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly cacheResults: Counter<"kind" | "result" | "tier"> = new Counter({
    name: "ferry_cache_results_total",
    help: "Cache outcomes by object kind, result and the tier that answered",
    labelNames: ["kind", "result", "tier"],
    registers: [this.registry],
    collect: (): void => this.cacheTallies.flushInto(this.cacheResults),
  });
  private readonly staleResponses: Counter<"registry" | "kind"> = new Counter({
    name: "ferry_stale_responses_total",
    help: "Answers served from the cache because the upstream failed or every tier rested, per registry and kind (manifest, tags)",
    labelNames: ["registry", "kind"],
    registers: [this.registry],
    collect: (): void => this.staleTallies.flushInto(this.staleResponses),
  });
  readonly bytesServed = new Counter({ name: "ferry_bytes_served_total", help: "Blob bytes sent to clients, by where they came from", labelNames: ["source"], registers: [this.registry] });
  readonly upstreamDuration = new Histogram({
    name: "ferry_upstream_request_duration_seconds",
    help: "Upstream latency to response headers, per registry and endpoint",
    labelNames: ["registry", "endpoint", "method"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly upstreamResponses = new Counter({ name: "ferry_upstream_responses_total", help: "Upstream answers by status (0 = network error or timeout)", labelNames: ["registry", "endpoint", "status"], registers: [this.registry] });
  readonly upstreamFallbacks = new Counter({ name: "ferry_upstream_fallbacks_total", help: "Requests that left an endpoint for the next tier", labelNames: ["registry", "endpoint"], registers: [this.registry] });
  readonly upstreamRateLimited = new Counter({ name: "ferry_upstream_rate_limited_total", help: "429s received from upstream endpoints", labelNames: ["registry", "endpoint"], registers: [this.registry] });
  readonly rateLimitedResponses = new Counter({ name: "ferry_rate_limited_responses_total", help: "429s sent to clients", labelNames: ["reason"], registers: [this.registry] });

  constructor(sources: { inFlightDownloads: () => number; cacheBytes: () => number; cacheBlobs: () => number; cacheMaxBytes?: number; memoryLimitCollections?: () => number; certificate?: () => { notAfter?: string; source: string } | undefined }) {
    collectDefaultMetrics({ register: this.registry, prefix: "ferry_" });
    new Gauge({ name: "ferry_inflight_downloads", help: "Blob downloads in progress", registers: [this.registry], collect() {
      this.set(sources.inFlightDownloads());
    } });
    new Gauge({ name: "ferry_cache_size_bytes", help: "Bytes in the local blob tier", registers: [this.registry], collect() {
      this.set(sources.cacheBytes());
    } });
    new Gauge({ name: "ferry_cache_blobs", help: "Blobs in the local blob tier", registers: [this.registry], collect() {
      this.set(sources.cacheBlobs());
    } });
    // Alert on `ferry_tls_certificate_expiry_timestamp_seconds - time() < 7 * 86400`.
    new Gauge({ name: "ferry_tls_certificate_expiry_timestamp_seconds", help: "notAfter of the HTTPS certificate served (Unix time), by source (acme, files)", labelNames: ["source"], registers: [this.registry], collect() {
      this.reset();
      const cert = sources.certificate?.();
      if (cert?.notAfter) this.set({ source: cert.source }, Date.parse(cert.notAfter) / 1000);
    } });
    if (sources.memoryLimitCollections) {
      const count = sources.memoryLimitCollections;
      new Counter({ name: "ferry_memory_limit_collections_total", help: "Full collections run because RSS was over server.memory_limit", registers: [this.registry], collect() {
        this.reset();
        this.inc(count());
      } });
    }
    if (sources.cacheMaxBytes !== undefined) {
      const max = sources.cacheMaxBytes;
      new Gauge({ name: "ferry_cache_max_size_bytes", help: "cache.max_size", registers: [this.registry], collect() {
        this.set(max);
      } });
    }
  }

  /** One answered request (see the tallies above). */
  countRequest(route: string, method: string, status: number, seconds: number): void {
    this.requestTallies.add(`${route} ${method} ${status}`, () => ({ route, method, status: String(status) }));
    this.httpDuration.observe({ route }, seconds);
  }

  /** Which tier answered a manifest or blob request, and how. */
  countCacheResult(kind: string, result: string, tier: string): void {
    this.cacheTallies.add(`${kind} ${result} ${tier}`, () => ({ kind, result, tier }));
  }

  /** An answer served from the cache because the upstream could not be asked or failed. */
  countStale(registry: string, kind: "manifest" | "tags"): void {
    this.staleTallies.add(`${registry} ${kind}`, () => ({ registry, kind }));
    const totals = this.staleTotals.get(registry) ?? {};
    totals[kind] = (totals[kind] ?? 0) + 1;
    this.staleTotals.set(registry, totals);
  }

  /** Stale answers since start for one registry, by kind. */
  staleCounts(registry: string): Record<string, number> {
    return { ...this.staleTotals.get(registry) };
  }

  /** A route label from a fixed set (any path a client makes up is "other"), from a request path. */
  static routeOf(path: string): string {
    if (!path.startsWith("/v2")) {
      if (PAGE_ROUTES.has(path)) return path === "/ui/" ? "/ui" : path;
      return path.startsWith("/assets/") ? "/assets" : "other";
    }
    if (/\/manifests\/[^/]+$/.test(path)) return "manifest";
    if (/\/blobs\/uploads/.test(path)) return "upload";
    if (/\/blobs\/[^/]+$/.test(path)) return "blob";
    if (/\/tags\/list$/.test(path)) return "tags";
    if (/\/referrers\/[^/]+$/.test(path)) return "referrers";
    if (path.endsWith("/_catalog")) return "catalog";
    return path === "/v2" || path === "/v2/" ? "base" : "other";
  }
}

/** The paths outside /v2/ ferry serves, each its own route label. */
const PAGE_ROUTES = new Set(["/", "/ui", "/ui/", "/api/status", "/api/repositories", "/metrics", "/healthz", "/readyz", "/token", "/v1/_ping", "/v1/search"]);

/** Counts per label set, keyed by a string the caller builds (no hashing per increment). */
class Tallies<L extends string> {
  private readonly byKey = new Map<string, { labels: Record<L, string>; count: number }>();

  add(key: string, labels: () => Record<L, string>): void {
    const tally = this.byKey.get(key);
    if (tally) tally.count++;
    else this.byKey.set(key, { labels: labels(), count: 1 });
  }

  flushInto(counter: Counter<L>): void {
    for (const tally of this.byKey.values()) {
      if (tally.count === 0) continue;
      counter.inc(tally.labels, tally.count);
      tally.count = 0;
    }
  }
}
