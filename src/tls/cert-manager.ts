// The certificate ferry serves over HTTPS: loaded from storage at start, ordered when
// missing, about to expire or not covering the configured names, renewed on a timer.
// Replicas sharing Redis take a lease so one orders while the others wait and then
// adopt what it stored. A failed order (CA down, refused) is retried with backoff and
// never stops what is served: plain HTTP, and the stored certificate while still valid.
import type { AcmeSettings } from "../config/config.ts";
import type { LockService } from "../cache/locks.ts";
import type { Logger } from "../observe/logger.ts";
import { certificateInfo, newAccountKey, orderCertificate, type CertificateInfo, type IssuedCertificate } from "./acme-order.ts";
import type { CertStorage } from "./cert-storage.ts";
import type { ChallengeResponder } from "./challenge-responder.ts";

const ACCOUNT_KEY = "account-key.pem";
const CERTIFICATE = "certificate.json";
const LOCK = "acme-order";
/** How often a replica waiting on another's order looks for its result. */
const WAIT_POLL_MS = 500;
/** Longest wait on another replica's order before trying again (a holder renews its lease). */
const MAX_WAIT_MS = 10 * 60_000;
/** setTimeout's largest delay (about 24.8 days); longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CertificateState {
  source: "acme" | "files";
  /** Of the certificate being served: none yet, valid, or past its notAfter. */
  status: "none" | "valid" | "expired";
  domains: string[];
  issuer?: string;
  notBefore?: string;
  notAfter?: string;
  /** When the next order is due (renewal or retry). */
  renewAt?: string;
  ordering: boolean;
  /** Why the last order failed (cleared by a success). */
  lastError?: string;
  failures: number;
  directoryUrl?: string;
}

export class CertificateManager {
  private current?: { pem: IssuedCertificate; info: CertificateInfo };
  private timer?: Timer;
  private failures = 0;
  private lastError?: string;
  private nextAt?: Date;
  private ordering = false;
  private stopped = false;

  constructor(
    private readonly settings: AcmeSettings,
    private readonly storage: CertStorage,
    private readonly challenges: ChallengeResponder,
    private readonly locks: LockService,
    private readonly log: Logger,
    /** Called with each certificate to serve (the stored one at start, then renewals). */
    private readonly onCertificate: (pem: IssuedCertificate) => void,
  ) {}

  /** Serves a usable stored certificate at once; orders in the background otherwise. */
  async start(): Promise<void> {
    const stored = await this.readStored();
    if (stored && stored.info.notAfter > new Date()) this.adopt(stored);
    this.schedule(this.due(stored) ? new Date() : this.renewAt(stored!.info));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  get state(): CertificateState {
    const info = this.current?.info;
    return {
      source: "acme",
      status: !info ? "none" : info.notAfter > new Date() ? "valid" : "expired",
      domains: info?.domains ?? this.settings.domains,
      issuer: info?.issuer,
      notBefore: info?.notBefore.toISOString(),
      notAfter: info?.notAfter.toISOString(),
      renewAt: this.nextAt?.toISOString(),
      ordering: this.ordering,
      lastError: this.lastError,
      failures: this.failures,
      directoryUrl: this.settings.directoryUrl,
    };
  }

  /** Orders now unless the stored certificate is fine (another replica may have renewed it). */
  async renew(): Promise<void> {
    if (this.ordering || this.stopped) return;
    this.ordering = true;
    try {
      const fresh = await this.obtain();
      this.adopt(fresh);
      this.failures = 0;
      this.lastError = undefined;
      this.schedule(this.renewAt(fresh.info));
    } catch (error) {
      this.failures++;
      this.lastError = (error as Error).message;
      const delay = Math.min(this.settings.retryMinMs * 2 ** (this.failures - 1), this.settings.retryMaxMs);
      this.log.error({ err: this.lastError, failures: this.failures, retryInSeconds: Math.round(delay / 1000), directory: this.settings.directoryUrl, serving: this.state.status }, "acme: certificate order failed; retrying");
      this.schedule(new Date(Date.now() + delay));
    } finally {
      this.ordering = false;
    }
  }

  private async obtain(): Promise<{ pem: IssuedCertificate; info: CertificateInfo }> {
    // Bounded: a holder renews its lease while it orders; a dead one's lease lapses.
    for (let attempt = 0; attempt < 10; attempt++) {
      const lease = await this.locks.acquire(LOCK);
      if (lease) {
        try {
          const stored = await this.readStored();
          if (stored && !this.due(stored)) return stored; // another replica renewed it meanwhile
          this.log.info({ domains: this.settings.domains, directory: this.settings.directoryUrl }, "acme: ordering a certificate");
          const pem = await orderCertificate(this.settings, await this.accountKey(), this.challenges);
          const info = certificateInfo(pem.cert);
          await this.storage.write(CERTIFICATE, JSON.stringify(pem));
          this.log.info({ domains: info.domains, notAfter: info.notAfter.toISOString(), issuer: info.issuer }, "acme: certificate issued");
          return { pem, info };
        } finally {
          await lease.release();
        }
      }
      // Another replica is ordering: wait for its certificate, or for its lease to go.
      const deadline = Date.now() + MAX_WAIT_MS;
      while (!this.stopped && Date.now() < deadline && (await this.locks.isHeld(LOCK))) await Bun.sleep(WAIT_POLL_MS);
      if (this.stopped) throw new Error("stopped");
      const stored = await this.readStored();
      if (stored && !this.due(stored)) {
        this.log.info({ notAfter: stored.info.notAfter.toISOString() }, "acme: adopted the certificate another replica ordered");
        return stored;
      }
    }
    throw new Error("gave up waiting for another replica's order");
  }

  private async accountKey(): Promise<string> {
    const stored = await this.storage.read(ACCOUNT_KEY);
    if (stored) return stored;
    const key = await newAccountKey();
    await this.storage.write(ACCOUNT_KEY, key);
    return key;
  }

  private async readStored(): Promise<{ pem: IssuedCertificate; info: CertificateInfo } | undefined> {
    const text = await this.storage.read(CERTIFICATE);
    if (!text) return undefined;
    try {
      const pem = JSON.parse(text) as IssuedCertificate;
      return { pem, info: certificateInfo(pem.cert) };
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "acme: stored certificate unreadable; ordering a new one");
      return undefined;
    }
  }

  /** Missing, past its renewal time, or not covering every configured name. */
  private due(stored: { info: CertificateInfo } | undefined): boolean {
    if (!stored) return true;
    if (this.settings.domains.some((d) => !stored.info.domains.includes(d))) return true;
    return this.renewAt(stored.info) <= new Date();
  }

  /** renew_before ahead of expiry, but never in the first two thirds of the lifetime. */
  private renewAt(info: CertificateInfo): Date {
    const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
    return new Date(info.notAfter.getTime() - Math.min(this.settings.renewBeforeMs, lifetime / 3));
  }

  private adopt(cert: { pem: IssuedCertificate; info: CertificateInfo }): void {
    if (this.current && this.current.pem.cert === cert.pem.cert) return;
    this.current = cert;
    this.onCertificate(cert.pem);
  }

  private schedule(at: Date): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.nextAt = at;
    const delay = Math.max(0, at.getTime() - Date.now());
    this.timer = setTimeout(() => (delay > MAX_TIMER_MS ? this.schedule(at) : void this.renew()), Math.min(delay, MAX_TIMER_MS));
  }
}
