// Endpoint health: cooldowns and a circuit breaker, so requests go straight to the next
// tier instead of paying a sick endpoint's timeout again.
//
// - A 429 cools the endpoint down for Retry-After (or the rate-limit reset headers, or
//   the configured default).
// - Any other failure (timeout, refused/reset, 5xx, stalled body) cools it down for the
//   base failure cooldown, doubled per consecutive failure (capped). After
//   `failureThreshold` consecutive failures the circuit is reported open; when the
//   cooldown ends one request at a time is let through as a half-open probe, and a
//   success closes the circuit again.
import type { HealthPolicy } from "../config/config.ts";

export type CircuitState = "closed" | "open" | "half-open";

export interface HealthSnapshot {
  state: CircuitState;
  available: boolean;
  coolingDown: boolean;
  cooldownReason?: "rate-limit" | "failure";
  cooldownRemainingMs: number;
  consecutiveFailures: number;
  recentRateLimits: number; // 429s received in the last hour
  lastError?: string;
  lastErrorAt?: string;
  lastSuccessAt?: string;
}

const RATE_LIMIT_WINDOW_MS = 60 * 60_000;

export class EndpointHealth {
  private cooldownUntil = 0;
  private cooldownReason: "rate-limit" | "failure" | undefined;
  private consecutiveFailures = 0;
  private probeInFlight = false;
  private rateLimits: number[] = [];
  private lastError: string | undefined;
  private lastErrorAt = 0;
  private lastSuccessAt = 0;

  constructor(
    private readonly policy: HealthPolicy,
    private readonly onChange: (event: string, snapshot: HealthSnapshot) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a request may go to this endpoint now. Claims the probe slot when half-open. */
  tryAcquire(): boolean {
    if (this.now() < this.cooldownUntil) return false;
    if (this.consecutiveFailures >= this.policy.failureThreshold) {
      if (this.probeInFlight) return false;
      this.probeInFlight = true;
    }
    return true;
  }

  /** Cooling down because of a 429 (the one case where trying anyway is pointless). */
  rateLimitedFor(): number {
    return this.cooldownReason === "rate-limit" ? Math.max(0, this.cooldownUntil - this.now()) : 0;
  }

  recordSuccess(): void {
    const wasFailing = this.consecutiveFailures > 0 || this.now() < this.cooldownUntil;
    this.consecutiveFailures = 0;
    this.probeInFlight = false;
    this.cooldownUntil = 0;
    this.cooldownReason = undefined;
    this.lastSuccessAt = this.now();
    if (wasFailing) this.onChange("endpoint recovered", this.snapshot());
  }

  /** Rests the endpoint after a 429; returns the cooldown applied (what the client is told to wait). */
  recordRateLimit(cooldownMs: number | undefined, message: string): number {
    const now = this.now();
    this.rateLimits = this.rateLimits.filter((t) => now - t < RATE_LIMIT_WINDOW_MS);
    this.rateLimits.push(now);
    this.probeInFlight = false;
    this.cooldownReason = "rate-limit";
    const applied = Math.min(cooldownMs ?? this.policy.rateLimitCooldownMs, this.policy.maxCooldownMs * 12);
    this.cooldownUntil = now + applied;
    this.noteError(message);
    this.onChange("endpoint rate-limited; cooling down", this.snapshot());
    return applied;
  }

  recordFailure(message: string): void {
    this.consecutiveFailures++;
    this.probeInFlight = false;
    const backoff = this.policy.failureCooldownMs * 2 ** Math.min(this.consecutiveFailures - 1, 20);
    this.cooldownReason = "failure";
    this.cooldownUntil = this.now() + Math.min(backoff, this.policy.maxCooldownMs);
    this.noteError(message);
    this.onChange(this.consecutiveFailures >= this.policy.failureThreshold ? "endpoint circuit open" : "endpoint failed; cooling down", this.snapshot());
  }

  /** A cooldown another replica observed (shared through Redis); never shortens our own. */
  applyRemoteCooldown(until: number, reason: "rate-limit" | "failure"): void {
    if (until <= this.cooldownUntil || until <= this.now()) return;
    this.cooldownUntil = until;
    this.cooldownReason = reason;
  }

  /** Until when (ms epoch) this endpoint rests, and why; undefined when it doesn't. */
  cooldown(): { until: number; reason: "rate-limit" | "failure" } | undefined {
    return this.cooldownUntil > this.now() && this.cooldownReason ? { until: this.cooldownUntil, reason: this.cooldownReason } : undefined;
  }

  /** Gives back a half-open probe slot taken by tryAcquire (idempotent: every path of a request calls it). */
  release(): void {
    this.probeInFlight = false;
  }

  snapshot(): HealthSnapshot {
    const now = this.now();
    const remaining = Math.max(0, this.cooldownUntil - now);
    const tripped = this.consecutiveFailures >= this.policy.failureThreshold;
    const state: CircuitState = !tripped ? "closed" : remaining > 0 ? "open" : "half-open";
    return {
      state,
      available: remaining === 0 && !(tripped && this.probeInFlight),
      coolingDown: remaining > 0,
      cooldownReason: remaining > 0 ? this.cooldownReason : undefined,
      cooldownRemainingMs: remaining,
      consecutiveFailures: this.consecutiveFailures,
      recentRateLimits: this.rateLimits.filter((t) => now - t < RATE_LIMIT_WINDOW_MS).length,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt ? new Date(this.lastErrorAt).toISOString() : undefined,
      lastSuccessAt: this.lastSuccessAt ? new Date(this.lastSuccessAt).toISOString() : undefined,
    };
  }

  private noteError(message: string): void {
    this.lastError = message;
    this.lastErrorAt = this.now();
  }
}

/**
 * How long a 429 says to wait: Retry-After, else the rate-limit reset headers
 * (`RateLimit-Reset` seconds, `X-RateLimit-Reset` seconds or epoch seconds).
 */
export function rateLimitCooldownMs(headers: Headers, retryAfterSeconds: number | undefined, now = Date.now()): number | undefined {
  if (retryAfterSeconds !== undefined) return retryAfterSeconds * 1000;
  for (const name of ["ratelimit-reset", "x-ratelimit-reset"]) {
    const value = headers.get(name)?.split(/[;,]/)[0]?.trim();
    if (!value || !/^\d+$/.test(value)) continue;
    const n = Number(value);
    // Large values are epoch seconds; small ones are seconds from now.
    return n > 1_000_000_000 ? Math.max(0, n * 1000 - now) : n * 1000;
  }
  return undefined;
}
