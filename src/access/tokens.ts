// Ferry's own bearer tokens (the registry token flow, so `docker login MIRROR` works):
// compact JWTs signed with HMAC-SHA256. For passthrough registries a token may carry the
// client's upstream credentials, encrypted with AES-256-GCM under a key derived from the
// same secret, so any replica sharing the secret can use them and nobody else can read them.
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";

export interface TokenClaims {
  sub: string; // user name; "" for anonymous
  access: string[]; // repository names granted pull
  exp: number; // seconds since epoch
  iat: number;
  up?: string; // encrypted upstream credentials (passthrough_auth)
}

const b64url = (data: Uint8Array | string) => Buffer.from(data).toString("base64url");

export class TokenSigner {
  private readonly macKey: Buffer;
  private readonly encKey: Buffer;

  constructor(secret: string) {
    this.macKey = createHash("sha256").update(`ferry-token-mac:${secret}`).digest();
    this.encKey = createHash("sha256").update(`ferry-token-enc:${secret}`).digest();
  }

  sign(claims: TokenClaims): string {
    const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const body = b64url(JSON.stringify(claims));
    return `${head}.${body}.${this.mac(`${head}.${body}`)}`;
  }

  /** The claims of a valid, unexpired token; undefined otherwise. */
  verify(token: string, now = Date.now()): TokenClaims | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const [head, body, sig] = parts as [string, string, string];
    const expected = Buffer.from(this.mac(`${head}.${body}`));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(body, "base64url").toString()) as TokenClaims;
      if (typeof claims.exp !== "number" || claims.exp * 1000 <= now || !Array.isArray(claims.access)) return undefined;
      return claims;
    } catch {
      return undefined;
    }
  }

  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.encKey, iv);
    const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return b64url(Buffer.concat([iv, cipher.getAuthTag(), data]));
  }

  open(sealed: string): string | undefined {
    try {
      const raw = Buffer.from(sealed, "base64url");
      const decipher = createDecipheriv("aes-256-gcm", this.encKey, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
    } catch {
      return undefined;
    }
  }

  private mac(input: string): string {
    return new Bun.CryptoHasher("sha256", this.macKey).update(input).digest("base64url");
  }
}

/** `repository:library/nginx:pull,push` → { name, actions }; other scope types → undefined. */
export function parseScope(scope: string): { name: string; actions: string[] } | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last <= first || scope.slice(0, first) !== "repository") return undefined;
  return { name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(",").filter(Boolean) };
}
