// /healthz: the process answers. /readyz: it can do its job: the cache dir is writable
// and, when configured, Redis and the shared blob store answer. Load balancers and
// systemd use the second; a replica that is not ready still serves what it can.
import { Elysia } from "elysia";
import type { Mirror } from "../registry/mirror.ts";

export function healthApi(mirror: Pick<Mirror, "readiness">) {
  return new Elysia({ name: "health-api" })
    .get("/healthz", () => new Response("ok\n", { headers: { "Content-Type": "text/plain" } }))
    .get("/readyz", async () => {
      const checks = await mirror.readiness();
      const ready = Object.values(checks).every((c) => c.ok);
      return Response.json({ ready, checks }, { status: ready ? 200 : 503 });
    });
}
