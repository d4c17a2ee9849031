// Content digests as the OCI image spec defines them: "<algorithm>:<encoded>".
// Only the registered algorithms are accepted, with their exact hex length, so a
// digest is safe to use as a path segment, an object key or a Redis key.

export type DigestAlgorithm = "sha256" | "sha512";

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** The canonical "algorithm:hex" form. */
  text: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** Parses a digest string; undefined when it is not a valid sha256/sha512 digest. */
export function parseDigest(value: string): Digest | undefined {
  const colon = value.indexOf(":");
  if (colon < 0) return undefined;
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== "sha256" && algorithm !== "sha512") return undefined;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex, text: value };
}

/** True when the reference looks like a digest (has an algorithm prefix), valid or not. */
export function looksLikeDigest(reference: string): boolean {
  return /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:/.test(reference);
}

/** Incremental hasher for a digest's algorithm. */
export function digestHasher(algorithm: DigestAlgorithm): Bun.CryptoHasher {
  return new Bun.CryptoHasher(algorithm);
}

/** Digest of a whole in-memory buffer (manifests only; blobs are hashed while streamed). */
export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${new Bun.CryptoHasher(algorithm).update(bytes).digest("hex")}`;
}
