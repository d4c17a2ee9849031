// Signed schema1 manifests (application/vnd.docker.distribution.manifest.v1+prettyjws):
// a JWS in libtrust's "pretty" form, the manifest with a "signatures" array spliced in.
// Registries name them by the digest of the JWS payload, the manifest as it was before the
// signatures went in: body[0:formatLength] + formatTail, both from the protected header.
import { digestOf, type DigestAlgorithm } from "./digest.ts";

/** The payload a signed schema1 manifest's digest covers; undefined for anything else. */
export function signedSchema1Payload(body: Uint8Array): Uint8Array | undefined {
  let parsed: { schemaVersion?: unknown; signatures?: { protected?: unknown }[] };
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return undefined;
  }
  if (parsed?.schemaVersion !== 1 || !Array.isArray(parsed.signatures) || parsed.signatures.length === 0) return undefined;
  let format: { length: number; tail: string } | undefined;
  for (const signature of parsed.signatures) {
    let header: { formatLength?: unknown; formatTail?: unknown };
    try {
      header = JSON.parse(Buffer.from(String(signature?.protected ?? ""), "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
    if (typeof header.formatLength !== "number" || !Number.isInteger(header.formatLength) || typeof header.formatTail !== "string") return undefined;
    // Every signature must describe the same payload (libtrust refuses otherwise).
    if (format && (format.length !== header.formatLength || format.tail !== header.formatTail)) return undefined;
    format = { length: header.formatLength, tail: header.formatTail };
  }
  if (!format || format.length < 0 || format.length > body.byteLength) return undefined;
  const tail = Buffer.from(format.tail, "base64url");
  const payload = new Uint8Array(format.length + tail.byteLength);
  payload.set(body.subarray(0, format.length));
  payload.set(tail, format.length);
  return payload;
}

/** A manifest's digest as registries compute it: of the body, or of a signed schema1's payload. */
export function manifestDigest(body: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return digestOf(signedSchema1Payload(body) ?? body, algorithm);
}
