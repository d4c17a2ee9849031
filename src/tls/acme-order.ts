// One certificate order against an RFC 8555 CA, through acme-client (JWS, nonces, polling
// and retries are the library's). Only HTTP-01 is offered: Bun's TLS server can neither
// negotiate the acme-tls/1 protocol nor pick a certificate by ALPN, so TLS-ALPN-01 cannot
// be answered (docs/deployment.md).
import { Agent } from "node:https";
import * as acme from "acme-client";
import type { AcmeSettings } from "../config/config.ts";
import type { ChallengeResponder } from "./challenge-responder.ts";

export interface IssuedCertificate {
  /** The leaf followed by the chain, PEM. */
  cert: string;
  key: string;
}

export interface CertificateInfo {
  domains: string[];
  notBefore: Date;
  notAfter: Date;
  issuer: string;
}

export function newAccountKey(): Promise<string> {
  return acme.crypto.createPrivateEcdsaKey("P-256").then((k) => k.toString());
}

export function certificateInfo(certPem: string): CertificateInfo {
  const info = acme.crypto.readCertificateInfo(certPem);
  // The names a client checks are the SANs; the CN only counts without any (RFC 6125).
  const domains = info.domains.altNames.length ? info.domains.altNames : [info.domains.commonName].filter((d): d is string => Boolean(d));
  return { domains, notBefore: info.notBefore, notAfter: info.notAfter, issuer: info.issuer.commonName ?? "" };
}

let directoryCa: string | undefined;

/** acme-client's HTTP settings (it has one axios instance): a private CA, and who retries. */
export async function configureAcmeHttp(caFile: string | undefined): Promise<void> {
  // Its own retries of a refused request take 75 s per order; the certificate manager
  // retries whole orders with backoff instead, and says why each time.
  (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 0;
  if (!caFile) return;
  directoryCa = await Bun.file(caFile).text();
  acme.axios.defaults.httpsAgent = new Agent({ ca: directoryCa });
}

export async function orderCertificate(settings: AcmeSettings, accountKey: string, challenges: ChallengeResponder): Promise<IssuedCertificate> {
  try {
    return await order(settings, accountKey, challenges);
  } catch (error) {
    // acme-client 5.4 fails with a TypeError ("response.config") when the CA cannot be
    // reached at all; say what the network said instead.
    if (error instanceof TypeError) throw new Error(`ACME directory ${settings.directoryUrl} unreachable: ${await unreachableBecause(settings.directoryUrl)}`);
    throw error;
  }
}

async function unreachableBecause(url: string): Promise<string> {
  try {
    const response = await fetch(url, { tls: directoryCa ? { ca: directoryCa } : undefined, signal: AbortSignal.timeout(10_000) });
    await response.body?.cancel();
    return `answered ${response.status}`;
  } catch (error) {
    const e = error as Error & { code?: string };
    return e.code ? `${e.code}: ${e.message}` : e.message;
  }
}

async function order(settings: AcmeSettings, accountKey: string, challenges: ChallengeResponder): Promise<IssuedCertificate> {
  const client = new acme.Client({
    directoryUrl: settings.directoryUrl,
    accountKey,
    externalAccountBinding: settings.eab ? { kid: settings.eab.kid, hmacKey: settings.eab.hmacKey } : undefined,
  });
  const [key, csr] = await acme.crypto.createCsr({ commonName: settings.domains[0], altNames: settings.domains }, await acme.crypto.createPrivateEcdsaKey("P-256"));
  const cert = await client.auto({
    csr,
    email: settings.email,
    termsOfServiceAgreed: true,
    challengePriority: ["http-01"],
    // acme-client's own pre-check fetches http://<domain>:80 from here, which a NAT or
    // split DNS can get wrong; the CA's validation is the one that counts.
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge, keyAuthorization) => challenges.publish(challenge.token, keyAuthorization),
    challengeRemoveFn: async (_authz, challenge) => challenges.withdraw(challenge.token),
  });
  return { cert, key: key.toString() };
}
