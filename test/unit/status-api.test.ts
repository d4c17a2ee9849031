// The status API reads only the view it is handed (no Mirror): each part of that view
// shows in the JSON an operator (and the dashboard) reads.
import { expect, test } from "bun:test";
import { TrafficStats } from "../../src/observe/traffic.ts";
import { statusApi, type StatusView } from "../../src/server/status-api.ts";

function view(extra: Partial<StatusView> = {}): StatusView {
  const traffic = new TrafficStats();
  traffic.served(true, 10);
  traffic.served(false, 30);
  return {
    registries: () => [{ registry: "docker.io", endpoints: [], staleResponses: { stale: 1 } }],
    downloads: () => new Map([["docker.io/sha256:ab", { digest: "sha256:ab", sourceKind: "upstream" as const, written: 5, size: undefined, state: "running" as const }]]),
    downloadPlaces: () => ({ max: 32, taken: 1, waiting: 0 }),
    cache: () => ({ dir: "/var/cache/ferry", bytes: 40, blobs: 2, maxBytes: undefined, diskFull: "ENOSPC", hashWorker: true }),
    shared: { bucket: "layers", redirect: true },
    redisConnected: () => false,
    traffic,
    certificate: () => undefined,
    repositories: async () => [{ registry: "docker.io", repository: "library/alpine", tags: [] }],
    ...extra,
  };
}

test("/api/status: tiers, downloads, cache, shared store, Redis and traffic from the view", async () => {
  const res = await statusApi(view()).handle(new Request("http://ferry.test/api/status"));
  expect(res.status).toBe(200);
  const body = (await res.json()) as Record<string, unknown>;
  expect(body.registries).toEqual([{ registry: "docker.io", endpoints: [], staleResponses: { stale: 1 } }]);
  expect(body.downloads).toEqual([{ key: "docker.io/sha256:ab", registry: "docker.io", digest: "sha256:ab", from: "upstream", bytes: 5, size: null, state: "running" }]);
  expect(body.downloadPlaces).toEqual({ max: 32, taken: 1, waiting: 0 });
  expect(body.cache).toEqual({ dir: "/var/cache/ferry", bytes: 40, blobs: 2, maxBytes: null, diskFull: "ENOSPC", hashWorker: true, shared: { kind: "s3", bucket: "layers", redirect: true }, redis: { connected: false } });
  expect(body.tls).toBeNull();
  expect(body.traffic).toMatchObject({ requests: 2, hits: 1, misses: 1, bytesFromCache: 10, bytesFromUpstream: 30, hitRatio: 0.5 });
});

test("/api/status: no shared store and no Redis are null; /api/repositories lists the view's", async () => {
  const app = statusApi(view({ shared: undefined, redisConnected: undefined }));
  const body = (await (await app.handle(new Request("http://ferry.test/api/status"))).json()) as { cache: Record<string, unknown> };
  expect(body.cache.shared).toBeNull();
  expect(body.cache.redis).toBeNull();
  const repos = await app.handle(new Request("http://ferry.test/api/repositories"));
  expect(await repos.json()).toEqual({ repositories: [{ registry: "docker.io", repository: "library/alpine", tags: [] }] });
});
