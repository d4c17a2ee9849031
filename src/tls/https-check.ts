// `ferry check` for HTTPS: the certificate ferry would serve (static files, or the one
// stored by ACME) with its expiry, and whether the ACME directory answers.
import { SharedRedis } from "../redis/redis-client.ts";
import type { Config } from "../config/config.ts";
import { createLogger } from "../observe/logger.ts";
import { certificateInfo, type IssuedCertificate } from "./acme-order.ts";
import { FsCertStorage, LayeredCertStorage, RedisCertStorage } from "./cert-storage.ts";

export interface CertificateProbe {
  what: string;
  target: string;
  ok: boolean;
  detail: string;
}

const DAY_MS = 86_400_000;

export function certificateProbes(config: Config): Promise<CertificateProbe>[] {
  const tls = config.server.tls!;
  if (!tls.acme) return [probeFiles(tls.cert!, tls.key!)];
  return [probeStored(config), probeDirectory(tls.acme.directoryUrl, tls.acme.caFile)];
}

function summarize(certPem: string): { ok: boolean; detail: string } {
  const info = certificateInfo(certPem);
  const left = info.notAfter.getTime() - Date.now();
  const when = `${info.notAfter.toISOString()} (${left > 0 ? `${Math.floor(left / DAY_MS)} days left` : "expired"})`;
  return { ok: left > 0, detail: `${info.domains.join(", ")} until ${when}, issued by ${info.issuer}` };
}

async function probeFiles(cert: string, key: string): Promise<CertificateProbe> {
  try {
    const pem = await Bun.file(cert).text();
    if (!(await Bun.file(key).exists())) return { what: "tls certificate", target: cert, ok: false, detail: `key file not found: ${key}` };
    return { what: "tls certificate", target: cert, ...summarize(pem) };
  } catch (error) {
    return { what: "tls certificate", target: cert, ok: false, detail: (error as Error).message };
  }
}

async function probeStored(config: Config): Promise<CertificateProbe> {
  const acme = config.server.tls!.acme!;
  const redis = config.redis ? new SharedRedis(config.redis, createLogger("silent")) : undefined;
  try {
    const local = new FsCertStorage(acme.storageDir);
    const storage = redis && (await redis.waitReady(3_000)) ? new LayeredCertStorage(new RedisCertStorage(redis), local) : local;
    const text = await storage.read("certificate.json");
    const target = `acme ${acme.domains.join(", ")}`;
    // None yet is fine: `ferry serve` orders one at start.
    if (!text) return { what: "tls certificate", target, ok: true, detail: "none stored yet: ferry serve orders one at start" };
    return { what: "tls certificate", target, ...summarize((JSON.parse(text) as IssuedCertificate).cert) };
  } catch (error) {
    return { what: "tls certificate", target: acme.storageDir, ok: false, detail: (error as Error).message };
  } finally {
    await redis?.close();
  }
}

async function probeDirectory(url: string, caFile: string | undefined): Promise<CertificateProbe> {
  const started = performance.now();
  try {
    const ca = caFile ? await Bun.file(caFile).text() : undefined;
    const response = await fetch(url, { tls: ca ? { ca } : undefined, signal: AbortSignal.timeout(10_000) });
    const body = (await response.json().catch(() => ({}))) as { newOrder?: string };
    const ms = Math.round(performance.now() - started);
    return { what: "acme directory", target: url, ok: response.ok && Boolean(body.newOrder), detail: response.ok && body.newOrder ? `directory ${ms} ms` : `answered ${response.status} without a newOrder URL` };
  } catch (error) {
    return { what: "acme directory", target: url, ok: false, detail: (error as Error).message };
  }
}
