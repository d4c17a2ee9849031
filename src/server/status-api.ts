// GET /api/status: a JSON view of each registry's tiers and their health, and of the
// downloads in flight. Holds no secrets: endpoints are shown by URL only.
import { Elysia } from "elysia";
import pkg from "../../package.json" with { type: "json" };
import type { TrafficStats } from "../observe/traffic.ts";
import type { BlobDownload } from "../registry/blob-download.ts";
import type { CachedRepository, RegistryStatus } from "../registry/mirror.ts";
import type { CertificateState } from "../tls/cert-manager.ts";

/** What the status API reads, handed to it where the app is made (app.ts). */
export interface StatusView {
  registries(): RegistryStatus[];
  downloads(): ReadonlyMap<string, Pick<BlobDownload, "digest" | "sourceKind" | "written" | "size" | "state">>;
  /** [cache] max_downloads: places taken, and requests waiting for one. */
  downloadPlaces(): { max: number; taken: number; waiting: number };
  cache(): { dir: string; bytes: number; blobs: number; maxBytes: number | undefined; diskFull: string | undefined; hashWorker: boolean };
  /** The shared blob store, when configured. */
  shared: { bucket: string | undefined; redirect: boolean } | undefined;
  /** Whether Redis is connected, when configured. */
  redisConnected: (() => boolean) | undefined;
  traffic: Pick<TrafficStats, "totals" | "series">;
  /** The HTTPS certificate (undefined without TLS). */
  certificate(): CertificateState | undefined;
  /** The same array while nothing changed: its JSON is encoded once. */
  repositories(): Promise<readonly CachedRepository[]>;
}

export function statusApi(view: StatusView) {
  let encoded: { repositories: readonly CachedRepository[]; body: Uint8Array } | undefined;
  return new Elysia({ name: "status-api" })
    .get("/api/status", () => {
      const t = view.traffic.totals;
      const cache = view.cache();
      return Response.json({
        version: pkg.version,
        uptimeSeconds: Math.round(process.uptime()),
        registries: view.registries(),
        downloads: [...view.downloads().entries()].map(([key, d]) => ({ key, registry: key.split("/")[0], digest: d.digest, from: d.sourceKind, bytes: d.written, size: d.size ?? null, state: d.state })),
        downloadPlaces: view.downloadPlaces(),
        cache: {
          dir: cache.dir,
          bytes: cache.bytes,
          blobs: cache.blobs,
          maxBytes: cache.maxBytes ?? null,
          diskFull: cache.diskFull ?? null,
          // Downloads go to disk natively and are hashed on a worker thread (false: on the event loop).
          hashWorker: cache.hashWorker,
          shared: view.shared ? { kind: "s3", bucket: view.shared.bucket, redirect: view.shared.redirect } : null,
          redis: view.redisConnected ? { connected: view.redisConnected() } : null,
        },
        // The HTTPS certificate (null without TLS): where from, until when, why an order failed.
        tls: view.certificate() ?? null,
        traffic: {
          ...t,
          hitRatio: t.requests ? t.hits / t.requests : null,
          series: view.traffic.series(24 * 60 * 60_000),
        },
      });
    })
    .get("/api/repositories", async () => {
      const repositories = await view.repositories();
      if (encoded?.repositories !== repositories) encoded = { repositories, body: new TextEncoder().encode(JSON.stringify({ repositories })) };
      return new Response(encoded.body, { headers: { "content-type": "application/json;charset=utf-8" } });
    });
}
