// HTTPS beside HTTP: the TLS listener and where its certificate comes from, either
// static files (tls_cert/tls_key, read again on SIGHUP) or ACME ([server.acme]). The
// plain listener asks intercept() first: ACME's HTTP-01 challenges, and the redirect of
// registry API requests to HTTPS once a certificate is served.
import type { SharedRedis } from "../redis/redis-client.ts";
import { LocalLocks, type LockService } from "../cache/locks.ts";
import type { TlsSettings } from "../config/config.ts";
import { ConfigError } from "../config/load.ts";
import type { Logger } from "../observe/logger.ts";
import { certificateInfo, configureAcmeHttp, type IssuedCertificate } from "./acme-order.ts";
import { CertificateManager, type CertificateState } from "./cert-manager.ts";
import { FsCertStorage, LayeredCertStorage, RedisCertStorage } from "./cert-storage.ts";
import { ChallengeResponder } from "./challenge-responder.ts";
import { TlsListener, type TlsListenerOptions } from "./tls-listener.ts";

export interface HttpsDeps {
  log: Logger;
  redis?: SharedRedis;
  locks?: LockService;
  listener: Omit<TlsListenerOptions, "hostname" | "port">;
}

export class Https {
  private readonly listener: TlsListener;
  private manager?: CertificateManager;
  private responder?: ChallengeResponder;
  private files?: { pem: IssuedCertificate; state: CertificateState };

  private constructor(
    private readonly settings: TlsSettings,
    private readonly deps: HttpsDeps,
  ) {
    this.listener = new TlsListener({ ...deps.listener, hostname: settings.hostname, port: settings.port });
  }

  static async start(settings: TlsSettings, deps: HttpsDeps): Promise<Https> {
    const https = new Https({ ...settings }, deps);
    if (settings.acme) await https.startAcme();
    else await https.reloadFiles();
    return https;
  }

  get state(): CertificateState | undefined {
    return this.manager?.state ?? this.files?.state;
  }

  /** Whether the plain listener must ask intercept() (ACME only). */
  get intercepts(): boolean {
    return this.responder !== undefined;
  }

  /** A response for the plain listener to send instead of the app's, if any. */
  async intercept(request: Request, path: string): Promise<Response | undefined> {
    if (!this.responder) return undefined;
    const challenge = await this.responder.respond(path);
    if (challenge) return challenge;
    if (!this.settings.acme?.redirectHttp || !path.startsWith("/v2") || !this.listener.listening) return undefined;
    // Only names the certificate covers: an IP or another name would meet a TLS error.
    const host = (request.headers.get("host") ?? "").toLowerCase().replace(/:\d+$/, "");
    if (!this.state?.domains.includes(host) || this.state.status !== "valid") return undefined;
    const url = new URL(request.url);
    const port = this.settings.port === 443 ? "" : `:${this.settings.port}`;
    return new Response(null, { status: 308, headers: { Location: `https://${host}${port}${url.pathname}${url.search}` } });
  }

  /** tls_cert/tls_key read again (SIGHUP): a renewed file pair is served to new connections. */
  async reloadFiles(next?: TlsSettings): Promise<void> {
    if (next) Object.assign(this.settings, { cert: next.cert, key: next.key });
    if (!this.settings.cert || !this.settings.key) return;
    for (const [key, path] of [["server.tls_cert", this.settings.cert], ["server.tls_key", this.settings.key]] as const) {
      if (!(await Bun.file(path).exists())) throw new ConfigError(key, `file not found: ${path}`);
    }
    const pem = { cert: await Bun.file(this.settings.cert).text(), key: await Bun.file(this.settings.key).text() };
    if (this.files && this.files.pem.cert === pem.cert && this.files.pem.key === pem.key) return;
    const info = certificateInfo(pem.cert);
    // Serve first: a cert/key pair that does not match throws here and the old one stays.
    this.listener.serve(pem);
    this.files = {
      pem,
      state: { source: "files", status: info.notAfter > new Date() ? "valid" : "expired", domains: info.domains, issuer: info.issuer, notBefore: info.notBefore.toISOString(), notAfter: info.notAfter.toISOString(), ordering: false, failures: 0 },
    };
    this.deps.log.info({ cert: this.settings.cert, notAfter: info.notAfter.toISOString(), listen: this.listener.url }, "tls: certificate files loaded");
  }

  async stop(): Promise<void> {
    this.manager?.stop();
    await this.listener.stop();
  }

  private async startAcme(): Promise<void> {
    const acme = this.settings.acme!;
    await configureAcmeHttp(acme.caFile);
    const local = new FsCertStorage(acme.storageDir);
    const shared = this.deps.redis ? new RedisCertStorage(this.deps.redis) : undefined;
    const storage = shared ? new LayeredCertStorage(shared, local) : local;
    this.responder = new ChallengeResponder(shared);
    this.manager = new CertificateManager(acme, storage, this.responder, this.deps.locks ?? new LocalLocks(), this.deps.log, (pem) => {
      this.listener.serve(pem);
      this.deps.log.info({ listen: this.listener.url, notAfter: this.manager?.state.notAfter }, "tls: serving the ACME certificate");
    });
    await this.manager.start();
  }
}
