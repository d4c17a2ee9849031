// The HTTP server: Elysia with one plugin per concern. The registry API is mounted
// under /v2; health endpoints answer load balancers and systemd.
import { Elysia } from "elysia";
import type { Mirror } from "../registry/mirror.ts";
import { registryApi } from "./registry-api.ts";
import { requestLog } from "./request-log.ts";
import { healthApi } from "./health-api.ts";
import { statusApi } from "./status-api.ts";

export function createApp(mirror: Mirror) {
  return new Elysia({ name: "ferry" })
    .use(requestLog(mirror.log, mirror.metrics))
    .use(registryApi(mirror))
    .use(statusApi(mirror))
    .use(healthApi(mirror))
    .get("/metrics", async () => new Response(await mirror.metrics.registry.metrics(), { headers: { "Content-Type": mirror.metrics.registry.contentType } }))
    .get("/", () => new Response(`ferry: a pull-through registry mirror.\nPoint Docker's "registry-mirrors" at this URL, or pull <this host>/<registry>/<image>.\n`, { headers: { "Content-Type": "text/plain; charset=utf-8" } }));
}
