// One certificate order against an RFC 8555 CA, through acme-client (JWS, nonces, polling
// and retries are the library's). Only HTTP-01 is offered: Bun's TLS server can neither
// negotiate the acme-tls/1 protocol nor pick a certificate by ALPN, so TLS-ALPN-01 cannot
// be answered (README, "HTTPS by itself").
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
  const domains = [...new Set([info.domains.commonName, ...info.domains.altNames].filter((d): d is string => Boolean(d)))];
  return { domains, notBefore: info.notBefore, notAfter: info.notAfter, issuer: info.issuer.commonName ?? "" };
}

/** Trust a private CA (pebble, step-ca) for the directory's HTTPS: acme-client has one axios instance. */
export async function trustDirectoryCa(caFile: string | undefined): Promise<void> {
  if (!caFile) return;
  acme.axios.defaults.httpsAgent = new Agent({ ca: await Bun.file(caFile).text() });
}

export async function orderCertificate(settings: AcmeSettings, accountKey: string, challenges: ChallengeResponder): Promise<IssuedCertificate> {
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
