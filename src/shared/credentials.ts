// Upstream credentials, and the one way to key anything by them (tokens, access decisions,
// tag lists) without a secret in the key.

export interface Credentials {
  username: string;
  password: string;
}

/**
 * Who a cache entry is for: a hash of the whole credential ("" for anonymous), so a wrong
 * password never hits what a right one earned, and no secret sits in a key.
 */
export function credentialKey(credentials?: Credentials): string {
  return credentials ? new Bun.CryptoHasher("sha256").update(`${credentials.username}:${credentials.password}`).digest("hex") : "";
}
