// HTTP-01: the CA fetches http://<domain>/.well-known/acme-challenge/<token> on port 80
// and expects the key authorization. With Redis the tokens are shared too, so behind a
// load balancer the replica the CA reaches answers for the one that ordered.
import type { CertStorage } from "./cert-storage.ts";

const PREFIX = "/.well-known/acme-challenge/";
/** A pending challenge outlives any order the CA would still validate. */
const TOKEN_TTL_MS = 10 * 60_000;

export class ChallengeResponder {
  private readonly local = new Map<string, string>();

  constructor(private readonly shared?: CertStorage) {}

  async publish(token: string, keyAuthorization: string): Promise<void> {
    this.local.set(token, keyAuthorization);
    await this.shared?.write(this.name(token), keyAuthorization, TOKEN_TTL_MS);
  }

  async withdraw(token: string): Promise<void> {
    this.local.delete(token);
    await this.shared?.remove(this.name(token));
  }

  /** The answer to a challenge request, or undefined when `path` is not one. */
  async respond(path: string): Promise<Response | undefined> {
    if (!path.startsWith(PREFIX)) return undefined;
    const token = path.slice(PREFIX.length);
    // Tokens are base64url (RFC 8555 §8.3); anything else is not ours to look up.
    const answer = /^[A-Za-z0-9_-]{1,256}$/.test(token) ? (this.local.get(token) ?? (await this.shared?.read(this.name(token)))) : undefined;
    if (answer === undefined) return new Response("unknown challenge token\n", { status: 404, headers: { "Content-Type": "text/plain" } });
    return new Response(answer, { headers: { "Content-Type": "application/octet-stream" } });
  }

  private name(token: string): string {
    return `challenge/${token}`;
  }
}
