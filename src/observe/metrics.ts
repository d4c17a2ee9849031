// Prometheus metrics (prom-client), on a registry of ferry's own so several instances
// (tests, replicas in one process) never share counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type ServedSource = "local" | "shared" | "upstream";

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({ name: "ferry_http_requests_total", help: "Requests answered, by API route, method and status", labelNames: ["route", "method", "status"], registers: [this.registry] });
  readonly httpDuration = new Histogram({
    name: "ferry_http_request_duration_seconds",
    help: "Time to response headers, by API route",
    labelNames: ["route"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly cacheResults = new Counter({ name: "ferry_cache_results_total", help: "Cache outcomes by object kind, result and the tier that answered", labelNames: ["kind", "result", "tier"], registers: [this.registry] });
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

  constructor(sources: { inFlightDownloads: () => number; cacheBytes: () => number; cacheBlobs: () => number; cacheMaxBytes?: number }) {
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
    if (sources.cacheMaxBytes !== undefined) {
      const max = sources.cacheMaxBytes;
      new Gauge({ name: "ferry_cache_max_size_bytes", help: "cache.max_size", registers: [this.registry], collect() {
        this.set(max);
      } });
    }
  }

  /** A route label with few values, from a request path. */
  static routeOf(path: string): string {
    if (!path.startsWith("/v2")) return path === "/" || path.startsWith("/ui") || path.startsWith("/api/") || path === "/metrics" || path === "/healthz" || path === "/readyz" || path === "/token" || path.startsWith("/v1/") ? path.split("/").slice(0, 3).join("/") || "/" : "other";
    if (/\/manifests\/[^/]+$/.test(path)) return "manifest";
    if (/\/blobs\/uploads/.test(path)) return "upload";
    if (/\/blobs\/[^/]+$/.test(path)) return "blob";
    if (/\/tags\/list$/.test(path)) return "tags";
    if (path.endsWith("/_catalog")) return "catalog";
    return path === "/v2" || path === "/v2/" ? "base" : "other";
  }
}
