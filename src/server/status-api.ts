// GET /api/status: a JSON view of each registry's tiers and their health, and of the
// downloads in flight. Holds no secrets: endpoints are shown by URL only.
import { Elysia } from "elysia";
import pkg from "../../package.json" with { type: "json" };
import type { Mirror } from "../registry/mirror.ts";
import type { CertificateState } from "../tls/cert-manager.ts";

export function statusApi(mirror: Mirror, certificate: () => CertificateState | undefined = () => undefined) {
  return new Elysia({ name: "status-api" })
    .get("/api/status", () => {
      const t = mirror.traffic.totals;
      return Response.json({
        version: pkg.version,
        uptimeSeconds: Math.round(process.uptime()),
        registries: mirror.upstreamStatus(),
        downloads: [...mirror.blobs.inFlight.entries()].map(([key, d]) => ({ key, registry: key.split("/")[0], digest: d.digest, from: d.sourceKind, bytes: d.written, size: d.size ?? null, state: d.state })),
        cache: {
          dir: mirror.config.cache.dir,
          bytes: mirror.blobStore.usage.size,
          blobs: mirror.blobStore.usage.count,
          maxBytes: mirror.config.cache.maxSize ?? null,
          diskFull: mirror.blobStore.diskFull ?? null,
          shared: mirror.sharedBlobs ? { kind: "s3", bucket: mirror.config.s3?.bucket, redirect: mirror.sharedBlobs.redirect } : null,
          redis: mirror.redis ? { connected: mirror.redis.ready } : null,
        },
        // The HTTPS certificate (null without TLS): where from, until when, why an order failed.
        tls: certificate() ?? null,
        traffic: {
          ...t,
          hitRatio: t.requests ? t.hits / t.requests : null,
          series: mirror.traffic.series(24 * 60 * 60_000),
        },
      });
    })
    .get("/api/repositories", async () => Response.json({ repositories: await mirror.cachedRepositories() }));
}
