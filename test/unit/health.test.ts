import { describe, expect, test } from "bun:test";
import type { HealthPolicy } from "../../src/config/config.ts";
import { EndpointHealth, rateLimitCooldownMs } from "../../src/upstream/health.ts";

const policy: HealthPolicy = { rateLimitCooldownMs: 60_000, failureCooldownMs: 1_000, maxCooldownMs: 8_000, failureThreshold: 3 };

function clock() {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("endpoint health", () => {
  test("a 429 cools down for Retry-After, then the endpoint is used again", () => {
    const c = clock();
    const h = new EndpointHealth(policy, undefined, c.now);
    h.recordRateLimit(5_000, "429");
    expect(h.tryAcquire()).toBe(false);
    expect(h.rateLimitedFor()).toBe(5_000);
    expect(h.snapshot()).toMatchObject({ coolingDown: true, cooldownReason: "rate-limit", recentRateLimits: 1, state: "closed" });
    c.advance(5_000);
    expect(h.tryAcquire()).toBe(true);
  });
  test("a 429 without Retry-After uses the configured default", () => {
    const c = clock();
    const h = new EndpointHealth(policy, undefined, c.now);
    h.recordRateLimit(undefined, "429");
    expect(h.snapshot().cooldownRemainingMs).toBe(60_000);
  });
  test("failures back off exponentially, open the circuit, and a half-open probe closes it", () => {
    const c = clock();
    const events: string[] = [];
    const h = new EndpointHealth(policy, (e) => events.push(e), c.now);
    h.recordFailure("timeout");
    expect(h.snapshot().cooldownRemainingMs).toBe(1_000);
    c.advance(1_000);
    h.recordFailure("timeout");
    expect(h.snapshot().cooldownRemainingMs).toBe(2_000);
    c.advance(2_000);
    h.recordFailure("reset");
    expect(h.snapshot()).toMatchObject({ state: "open", consecutiveFailures: 3, cooldownRemainingMs: 4_000 });
    c.advance(4_000);
    expect(h.snapshot().state).toBe("half-open");
    expect(h.tryAcquire()).toBe(true); // the probe
    expect(h.tryAcquire()).toBe(false); // others wait for it
    h.recordSuccess();
    expect(h.snapshot()).toMatchObject({ state: "closed", consecutiveFailures: 0, available: true });
    expect(events).toEqual(["endpoint failed; cooling down", "endpoint failed; cooling down", "endpoint circuit open", "endpoint recovered"]);
  });
  test("a 429's cooldown is what recordRateLimit returns (what the client is told to wait)", () => {
    const c = clock();
    const h = new EndpointHealth(policy, undefined, c.now);
    expect(h.recordRateLimit(undefined, "429")).toBe(60_000);
    expect(h.recordRateLimit(5_000, "429")).toBe(5_000);
    expect(h.rateLimitedFor()).toBe(5_000);
  });
  test("a half-open probe slot given back (a 404, a throw) lets the next request probe", () => {
    const c = clock();
    const h = new EndpointHealth(policy, undefined, c.now);
    for (let i = 0; i < 3; i++) h.recordFailure("x");
    c.advance(8_000);
    expect(h.tryAcquire()).toBe(true);
    expect(h.snapshot()).toMatchObject({ state: "half-open", available: false });
    h.release();
    h.release(); // idempotent
    expect(h.snapshot()).toMatchObject({ state: "half-open", available: true });
    expect(h.tryAcquire()).toBe(true);
    h.recordFailure("again"); // the probe failed: open again, slot free for after the cooldown
    expect(h.snapshot()).toMatchObject({ state: "open", coolingDown: true });
    expect(h.tryAcquire()).toBe(false);
  });
  test("cooldown is capped", () => {
    const c = clock();
    const h = new EndpointHealth(policy, undefined, c.now);
    for (let i = 0; i < 10; i++) h.recordFailure("x");
    expect(h.snapshot().cooldownRemainingMs).toBe(8_000);
  });
  test("rate-limit reset headers", () => {
    const now = 1_700_000_000_000;
    expect(rateLimitCooldownMs(new Headers(), 7, now)).toBe(7_000);
    expect(rateLimitCooldownMs(new Headers({ "ratelimit-reset": "30" }), undefined, now)).toBe(30_000);
    expect(rateLimitCooldownMs(new Headers({ "x-ratelimit-reset": String(now / 1000 + 90) }), undefined, now)).toBe(90_000);
    expect(rateLimitCooldownMs(new Headers({ "ratelimit-remaining": "0;w=21600" }), undefined, now)).toBeUndefined();
  });
});

describe("half-open probe slots across tiers (Upstream.request)", () => {
  // Two tiny in-process registries as tiers (support/tiny-registry.ts); the circuits are
  // opened by real failures and the test waits for the half-open state, not for time.
  const setup = async () => {
    const { Upstream } = await import("../../src/upstream/upstream.ts");
    const { TokenCache } = await import("../../src/upstream/auth.ts");
    const { createLogger } = await import("../../src/observe/logger.ts");
    const { registryConfig, startTinyRegistry } = await import("./support/tiny-registry.ts");
    const { waitFor } = await import("../harness/proc.ts");
    const tiers = [startTinyRegistry(), startTinyRegistry()];
    const upstream = new Upstream(registryConfig(tiers.map((t) => t.url), { failureCooldownMs: 20, maxCooldownMs: 20, failureThreshold: 1 }), new TokenCache(), createLogger("silent"));
    // One failure each opens both circuits; after the short cooldown both are half-open.
    const { errorJson } = await import("./support/tiny-registry.ts");
    for (const t of tiers) t.fault = () => errorJson(503, "UNAVAILABLE", "down");
    await upstream.request({ method: "GET", path: "/v2/" }).catch(() => {});
    await waitFor(() => upstream.status().every((e) => e.state === "half-open"), { timeoutMs: 5_000, what: "both tiers half-open" });
    for (const t of tiers) t.fault = undefined;
    return { upstream, tiers, stop: () => tiers.forEach((t) => t.stop()) };
  };

  test("a tier that was not asked keeps its probe slot free", async () => {
    const { upstream, tiers, stop } = await setup();
    try {
      const { response } = await upstream.request({ method: "GET", path: "/v2/" });
      expect(response.status).toBe(200);
      expect(tiers[1]!.count()).toBe(1); // only the first failure
      expect(upstream.status().map((e) => ({ state: e.state, available: e.available }))).toEqual([
        { state: "closed", available: true },
        { state: "half-open", available: true },
      ]);
    } finally {
      stop();
    }
  });

  test("a probe that ends in a 404 or a throw gives its slot back", async () => {
    const { errorJson } = await import("./support/tiny-registry.ts");
    const { upstream, tiers, stop } = await setup();
    try {
      const { response } = await upstream.request({ method: "GET", path: "/v2/nothing/manifests/x" });
      expect(response.status).toBe(404);
      expect(upstream.status()[0]).toMatchObject({ state: "half-open", available: true });
      // A token service that refuses: the request throws (TokenFetchError), the slot comes back.
      tiers[0]!.fault = (_req, url) =>
        url.pathname === "/token" ? errorJson(401, "UNAUTHORIZED", "bad credentials") : errorJson(401, "UNAUTHORIZED", "log in", { "WWW-Authenticate": `Bearer realm="${tiers[0]!.url}/token",service="tiny"` });
      const thrown = await upstream.request({ method: "GET", path: "/v2/private/x/manifests/1", repository: "private/x" }).then(
        () => undefined,
        (e: Error) => e.name,
      );
      expect(thrown).toBe("TokenFetchError");
      expect(upstream.status()[0]).toMatchObject({ state: "half-open", available: true });
    } finally {
      stop();
    }
  });
});
