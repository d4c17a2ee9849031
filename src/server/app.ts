// The HTTP server: Elysia with one plugin per concern. The registry API is mounted
// under /v2; health endpoints answer load balancers and systemd.
import { Elysia } from "elysia";
import type { AccessControl } from "../access/access.ts";
import { peerOf } from "../access/client-ip.ts";
import type { PageBudget } from "../access/limits.ts";
import { tokenEndpoint } from "../access/token-endpoint.ts";
import type { Mirror } from "../registry/mirror.ts";
import { registryApi } from "./registry-api.ts";
import { requestLog } from "./request-log.ts";
import { RegistryError } from "../protocol/errors.ts";
import { requestUrl, unroutableHost } from "../protocol/request-url.ts";
import { toRegistryErrorResponse } from "./errors.ts";
import { healthApi } from "./health-api.ts";
import { peerApi } from "./peer-api.ts";
import { statusApi, type StatusView } from "./status-api.ts";
import { webUi } from "./web-ui.ts";
import type { CertificateState } from "../tls/cert-manager.ts";

/** Operator pages and data: behind auth when [auth] is on. */
const ADMIN_PATHS = /^\/(ui(\/|$)|api\/|metrics$)/;

/** Paths outside /v2/ with a request budget of their own ([limits] *_requests_per_minute). */
function budgetOf(path: string): PageBudget | undefined {
  if (path === "/token") return "token";
  if (ADMIN_PATHS.test(path)) return "admin";
  if (path.startsWith("/v1/")) return "search";
  return undefined;
}

export function createApp(mirror: Mirror, access: AccessControl, certificate: () => CertificateState | undefined = () => undefined) {
  return new Elysia({ name: "ferry" })
    .use(requestLog(mirror.log, mirror.metrics))
    .onRequest(async ({ request, server }) => {
      if (unroutableHost(request)) return toRegistryErrorResponse(new RegistryError("UNSUPPORTED", "invalid Host header", { status: 400 }), request.method).response;
      const path = requestUrl(request).pathname;
      const budget = budgetOf(path);
      if (!budget) return;
      const peer = peerOf(request, server);
      try {
        await access.limitPage(request, peer, budget);
        if (budget !== "admin" || (await access.admin(request, peer))) return;
      } catch (error) {
        return toRegistryErrorResponse(error, request.method).response;
      }
      return new Response("authentication required\n", { status: 401, headers: { "WWW-Authenticate": `Basic realm="${mirror.config.auth?.service ?? "ferry"}"`, "Content-Type": "text/plain" } });
    })
    .use(tokenEndpoint(mirror.config, access, mirror))
    .use(registryApi(mirror, access))
    .use(statusApi(statusView(mirror, certificate)))
    .use(peerApi(mirror))
    .use(healthApi(mirror))
    .get("/metrics", async () => new Response(await mirror.metrics.registry.metrics(), { headers: { "Content-Type": mirror.metrics.registry.contentType } }))
    .use(webUi(mirror));
}

/** What the status API reads of this generation's mirror, and the HTTPS certificate. */
function statusView(mirror: Mirror, certificate: () => CertificateState | undefined): StatusView {
  const { config, blobStore, sharedBlobs, redis } = mirror;
  return {
    registries: () => mirror.upstreamStatus(),
    downloads: () => mirror.blobs.inFlight,
    downloadPlaces: () => mirror.blobs.downloadPlaces,
    cache: () => ({ dir: config.cache.dir, bytes: blobStore.usage.size, blobs: blobStore.usage.count, maxBytes: config.cache.maxSize, diskFull: blobStore.diskFull, hashWorker: blobStore.hashesOnWorker }),
    shared: sharedBlobs ? { bucket: config.s3?.bucket, redirect: sharedBlobs.redirect } : undefined,
    redisConnected: redis ? () => redis.ready : undefined,
    traffic: mirror.traffic,
    certificate,
    repositories: () => mirror.cachedRepositories(),
  };
}
