// GET /api/status: a JSON view of each registry's tiers and their health, and of the
// downloads in flight. Holds no secrets: endpoints are shown by URL only.
import { Elysia } from "elysia";
import pkg from "../../package.json" with { type: "json" };
import type { Mirror } from "../registry/mirror.ts";

export function statusApi(mirror: Mirror) {
  return new Elysia({ name: "status-api" }).get("/api/status", () =>
    Response.json({
      version: pkg.version,
      registries: mirror.upstreamStatus(),
      downloads: [...mirror.blobs.inFlight.entries()].map(([key, d]) => ({ key, bytes: d.written, size: d.size ?? null, state: d.state })),
    }),
  );
}
