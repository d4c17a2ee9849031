import { describe, expect, test } from "bun:test";
import { EndpointHealth, rateLimitCooldownMs, type HealthPolicy } from "../../src/upstream/health.ts";

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
