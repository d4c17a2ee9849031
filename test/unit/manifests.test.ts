// The manifest service's caching policy (Accept, negative cache, revalidation, stale
// serving, single-flight) against a tiny in-process registry behind the real Upstream
// tiers (see support/tiny-registry.ts). Clocks are real; nothing waits on time.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalLocks, type Lease, type LockService } from "../../src/cache/locks.ts";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { RegistryError } from "../../src/protocol/errors.ts";
import { ManifestService, type ManifestRequest } from "../../src/registry/manifests.ts";
import { TokenCache } from "../../src/upstream/auth.ts";
import { RegistryClient } from "../../src/upstream/registry-client.ts";
import { Upstream } from "../../src/upstream/upstream.ts";
import { ALL_TYPES, DOCKER_MANIFEST, endpointConfig, errorJson, hanging, htmlPage, OCI_INDEX, OCI_MANIFEST, refusedUrl, registryConfig, stallingBody, tinyRegistriesPerTest } from "./support/tiny-registry.ts";

const log = createLogger("silent");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const registry = tinyRegistriesPerTest();

function service(endpoints: Parameters<typeof registryConfig>[0], opts: { tagTtlMs?: number; negativeTtlMs?: number; locks?: LockService } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "ferry-manifests-"));
  const meta = new SqliteMetaStore(dir);
  cleanups.push(() => {
    meta.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const upstream = new Upstream(registryConfig(endpoints), new TokenCache(), log);
  const manifests = new ManifestService(meta, opts.locks ?? new LocalLocks(), () => new RegistryClient(upstream), () => opts.tagTtlMs ?? 60_000, opts.negativeTtlMs ?? 60_000, log);
  return { manifests, meta, upstream };
}

const repo = { registry: "docker.io", repository: "library/multi" };
const get = (s: ManifestService, reference: string, accept: string[] = ALL_TYPES, method: "GET" | "HEAD" = "GET"): Promise<Awaited<ReturnType<ManifestService["get"]>>> => s.get({ repo, reference, accept, method } satisfies ManifestRequest);
const failure = (p: Promise<unknown>) => p.then(
  () => {
    throw new Error("expected an error answer");
  },
  (e: unknown) => e as RegistryError,
);
const INDEX_BODY = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("Accept", () => {
  test("a client whose Accept excludes the cached index gets upstream's 404, and that 404 is not remembered for other clients", async () => {
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_INDEX, INDEX_BODY);
    const { manifests } = service([up.url]);
    expect(await get(manifests, "1")).toMatchObject({ digest, mediaType: OCI_INDEX, cache: "miss" });
    const narrow = await failure(get(manifests, "1", [DOCKER_MANIFEST]));
    expect({ status: narrow.status, code: narrow.code }).toEqual({ status: 404, code: "MANIFEST_UNKNOWN" });
    const full = await get(manifests, "1");
    expect({ digest: full.digest, mediaType: full.mediaType, cache: full.cache, body: text(full.body) }).toEqual({ digest, mediaType: OCI_INDEX, cache: "hit", body: INDEX_BODY });
  });

  test("the Accept-dependent 404 is remembered for clients with that same Accept only", async () => {
    const up = registry();
    up.put("library/multi", "1", OCI_INDEX, INDEX_BODY);
    const { manifests } = service([up.url]);
    await get(manifests, "1");
    for (let i = 0; i < 3; i++) expect((await failure(get(manifests, "1", [DOCKER_MANIFEST]))).status).toBe(404);
    expect(up.count({ method: "GET", pathIncludes: "/manifests/1" })).toBe(2); // the miss, then one narrow ask
  });
});

describe("negative cache", () => {
  test("an unknown tag is asked upstream once within negative_ttl", async () => {
    const up = registry();
    const { manifests } = service([up.url]);
    for (let i = 0; i < 3; i++) {
      const e = await failure(get(manifests, "nope"));
      expect({ status: e.status, code: e.code }).toEqual({ status: 404, code: "MANIFEST_UNKNOWN" });
    }
    expect(up.count({ pathIncludes: "/manifests/nope" })).toBe(1);
  });
});

describe("revalidation", () => {
  test("past tag_ttl an unchanged tag costs one HEAD; a moved tag fetches the new manifest", async () => {
    const up = registry();
    const first = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, n: 1 }));
    const { manifests } = service([up.url], { tagTtlMs: 0 });
    expect(await get(manifests, "1")).toMatchObject({ digest: first, cache: "miss" });
    up.log.length = 0;
    expect(await get(manifests, "1")).toMatchObject({ digest: first, cache: "hit" });
    expect(up.log.map((l) => `${l.method} ${l.status}`)).toEqual(["HEAD 200"]);
    const second = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2, n: 2 }));
    up.log.length = 0;
    expect(await get(manifests, "1")).toMatchObject({ digest: second, cache: "miss" });
    expect(up.log.map((l) => `${l.method} ${l.path.endsWith(second) ? "by-digest" : "tag"}`)).toEqual(["HEAD tag", "GET by-digest"]);
  });
});

describe("stale-if-error", () => {
  test("a failed revalidation serves the cached mapping as stale and moves the tag's clock forward", async () => {
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, meta } = service([up.url], { tagTtlMs: 60 * 60_000 });
    await get(manifests, "1");
    // A second service on the same store (its hot copies empty): the mapping was last
    // confirmed two hours ago, past its TTL.
    const record = (await meta.getTag(repo, "1"))!;
    await meta.putTag(repo, "1", { ...record, checkedAt: Date.now() - 2 * 60 * 60_000 });
    const later = new ManifestService(meta, new LocalLocks(), () => new RegistryClient(new Upstream(registryConfig([up.url]), new TokenCache(), log)), () => 60 * 60_000, 60_000, log);
    up.fault = () => errorJson(503, "UNAVAILABLE", "down for maintenance");
    up.log.length = 0;
    const before = Date.now();
    expect(await get(later, "1")).toMatchObject({ digest, cache: "stale" });
    expect((await meta.getTag(repo, "1"))!.checkedAt).toBeGreaterThanOrEqual(before);
    // Within tag_ttl again: a hit, upstream not asked.
    expect(await get(later, "1")).toMatchObject({ digest, cache: "hit" });
    expect(up.log.length).toBe(1);
  });

  test("while every tier rests, a revalidation does not ask them: the cached copy is served at once", async () => {
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, upstream } = service([endpointConfig(up.url, { timeoutMs: 300 })], { tagTtlMs: 0 });
    expect(await get(manifests, "1")).toMatchObject({ digest, cache: "miss" });
    up.fault = () => hanging();
    up.log.length = 0;
    expect(await get(manifests, "1")).toMatchObject({ digest, cache: "stale" }); // paid the timeout once
    expect(upstream.status()[0]).toMatchObject({ coolingDown: true });
    for (let i = 0; i < 5; i++) expect(await get(manifests, "1")).toMatchObject({ digest, cache: "stale" });
    expect(up.log.length).toBe(1);
  });

  test("a miss with nothing cached still probes a resting tier (it is the only way to an answer)", async () => {
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, upstream } = service([up.url]);
    up.fault = () => errorJson(503, "UNAVAILABLE", "blip");
    expect((await failure(get(manifests, "1"))).status).toBe(502);
    expect(upstream.status()[0]).toMatchObject({ coolingDown: true });
    up.fault = undefined;
    expect(await get(manifests, "1")).toMatchObject({ digest, cache: "miss" });
  });
});

describe("tiers", () => {
  test("an HTML 403 from a tier is the network's, not the registry's: the next tier answers", async () => {
    const front = registry();
    front.fault = () => htmlPage(403);
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, upstream } = service([front.url, up.url]);
    expect(await get(manifests, "1")).toMatchObject({ digest, cache: "miss" });
    expect(upstream.status()[0]).toMatchObject({ coolingDown: true });
    expect(upstream.status()[0]!.lastError).toContain("403");
  });

  test("an HTML 401/403/429/5xx from the only tier is a 502/429 saying so, and nothing is remembered", async () => {
    const front = registry();
    const digest = front.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests } = service([front.url], {});
    front.fault = () => htmlPage(403);
    const e = await failure(get(manifests, "1"));
    expect({ status: e.status, code: e.code }).toEqual({ status: 502, code: "UNAVAILABLE" });
    expect(e.message).toContain("not a registry answer");
    // Not cached as a verdict: a later (probing) ask gets the real answer.
    front.fault = undefined;
    expect(await get(manifests, "1")).toMatchObject({ digest });
  });

  test("a registry's own JSON DENIED stays DENIED and the next tier is not asked", async () => {
    const front = registry();
    front.fault = () => errorJson(403, "DENIED", "requested access to the resource is denied");
    const up = registry();
    up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, upstream } = service([front.url, up.url]);
    const e = await failure(get(manifests, "1"));
    expect({ status: e.status, code: e.code }).toEqual({ status: 403, code: "DENIED" });
    expect(up.log.length).toBe(0);
    expect(upstream.status()[0]).toMatchObject({ coolingDown: false });
  });

  test("a body that stalls after its headers is cut at the deadline and the next tier answers", async () => {
    const stall = registry();
    stall.fault = () => stallingBody(OCI_MANIFEST);
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests, upstream } = service([endpointConfig(stall.url, { timeoutMs: 300 }), up.url]);
    expect(await get(manifests, "1")).toMatchObject({ digest, cache: "miss" });
    expect(upstream.status()[0]!.lastError).toContain("timeout");
  });

  test("a miss whose only tier stalls after its headers ends at the deadline (504) and gives back its cross-replica lease", async () => {
    const stall = registry();
    stall.fault = () => stallingBody(OCI_MANIFEST);
    const held = new Set<string>();
    // A lease service that records what is held (with Redis a held lease is renewed while its work runs).
    const locks: LockService = {
      isHeld: async (name) => held.has(name),
      acquire: async (name) => (held.add(name), { release: async () => void held.delete(name) }),
      holder: async () => undefined,
      ownsToken: () => false,
      leaseMs: 15_000,
    };
    const { manifests } = service([endpointConfig(stall.url, { timeoutMs: 300 })], { locks });
    const e = await failure(get(manifests, "1"));
    expect({ status: e.status, code: e.code }).toEqual({ status: 504, code: "UNAVAILABLE" });
    expect(e.message).toContain("timed out (body)");
    expect([...held]).toEqual([]);
  });

  test("an upstream 429 without Retry-After reaches the client with the cooldown ferry applies", async () => {
    const up = registry();
    up.fault = () => errorJson(429, "TOOMANYREQUESTS", "slow down");
    const { manifests } = service([up.url]);
    const e = await failure(get(manifests, "1"));
    expect({ status: e.status, code: e.code, retryAfter: e.headers["Retry-After"] }).toEqual({ status: 429, code: "TOOMANYREQUESTS", retryAfter: "60" });
  });

  test("tiers [refused, rate-limited]: while the 429 tier rests the answer is 429 with the time until it is free", async () => {
    const refused = await refusedUrl();
    const limited = registry();
    limited.fault = () => errorJson(429, "TOOMANYREQUESTS", "slow down", { "Retry-After": "30" });
    const { manifests } = service([refused, limited.url]);
    const first = await failure(get(manifests, "a"));
    expect({ status: first.status, retryAfter: first.headers["Retry-After"] }).toEqual({ status: 429, retryAfter: "30" });
    const again = await failure(get(manifests, "b"));
    expect({ status: again.status, code: again.code }).toEqual({ status: 429, code: "TOOMANYREQUESTS" });
    expect(Number(again.headers["Retry-After"])).toBeGreaterThan(0);
    expect(Number(again.headers["Retry-After"])).toBeLessThanOrEqual(30);
    expect(limited.log.length).toBe(1);
  });

  test("every tier request carries ferry's User-Agent", async () => {
    const up = registry();
    up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    const { manifests } = service([up.url]);
    await get(manifests, "1");
    const pkg = (await Bun.file(join(import.meta.dir, "../../package.json")).json()) as { version: string };
    expect(up.log.map((l) => l.userAgent)).toEqual([`ferry/${pkg.version}`]);
  });
});

describe("single-flight", () => {
  test("tag_ttl 0: a revalidation that arrives while the miss is finishing gets a manifest, not a 500", async () => {
    const up = registry();
    const digest = up.put("library/multi", "1", OCI_MANIFEST, JSON.stringify({ schemaVersion: 2 }));
    // The miss holds its lease until the test lets go: the tag is stored by then, so a
    // second client revalidates while the miss is still in flight.
    let letGo!: () => void;
    const gate = new Promise<void>((r) => (letGo = r));
    let leased!: () => void;
    const leaseTaken = new Promise<void>((r) => (leased = r));
    const locks: LockService = { isHeld: async () => false, acquire: async (): Promise<Lease> => ({ release: async () => (leased(), await gate) }), holder: async () => undefined, ownsToken: () => false, leaseMs: 15_000 };
    const { manifests, meta } = service([up.url], { tagTtlMs: 0, locks });
    const miss = get(manifests, "1");
    await leaseTaken;
    expect(await meta.getTag(repo, "1")).toMatchObject({ digest });
    const joined = get(manifests, "1");
    letGo();
    const [a, b] = await Promise.allSettled([miss, joined]);
    expect(a).toMatchObject({ status: "fulfilled", value: { digest } });
    expect(b).toMatchObject({ status: "fulfilled", value: { digest } });
  });
});
