// The HTTP server: Elysia with one plugin per concern. The registry API is mounted
// under /v2; health endpoints answer load balancers and systemd.
import { Elysia } from "elysia";
import type { AccessControl } from "../access/access.ts";
import { tokenEndpoint } from "../access/token-endpoint.ts";
import type { Mirror } from "../registry/mirror.ts";
import { registryApi } from "./registry-api.ts";
import { requestLog } from "./request-log.ts";
import { requestUrl } from "./request-url.ts";
import { healthApi } from "./health-api.ts";
import { peerApi } from "./peer-api.ts";
import { statusApi } from "./status-api.ts";
import { webUi } from "./web-ui.ts";

/** Operator pages and data: behind auth when [auth] is on. */
const ADMIN_PATHS = /^\/(ui(\/|$)|api\/|metrics$)/;

export function createApp(mirror: Mirror, access: AccessControl) {
  return new Elysia({ name: "ferry" })
    .use(requestLog(mirror.log, mirror.metrics))
    .onRequest(async ({ request }) => {
      if (!ADMIN_PATHS.test(requestUrl(request).pathname)) return;
      if (await access.admin(request)) return;
      return new Response("authentication required\n", { status: 401, headers: { "WWW-Authenticate": `Basic realm="${mirror.config.auth?.service ?? "ferry"}"`, "Content-Type": "text/plain" } });
    })
    .use(tokenEndpoint(mirror.config, access, (name) => mirror.upstreamFor(name)))
    .use(registryApi(mirror, access))
    .use(statusApi(mirror))
    .use(peerApi(mirror))
    .use(healthApi(mirror))
    .get("/metrics", async () => new Response(await mirror.metrics.registry.metrics(), { headers: { "Content-Type": mirror.metrics.registry.contentType } }))
    .use(webUi(mirror));
}
