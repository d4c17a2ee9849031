// A tiny registry client for tests: plain fetch plus the Docker token dance
// (401 + WWW-Authenticate: Bearer realm=…,service=…,scope=… -> GET realm -> retry).
// Works against the test upstream's front, distribution itself, or ferry.

export interface BearerChallenge {
  realm: string;
  service?: string;
  scope?: string;
  error?: string;
}

/** Parse `Bearer realm="…",service="…",scope="…"`; undefined if not a Bearer challenge. */
export function parseBearerChallenge(header: string | null | undefined): BearerChallenge | undefined {
  if (!header) return undefined;
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m?.[1]) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[1].matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) {
    if (p[1] && p[2] !== undefined) params[p[1].toLowerCase()] = p[2];
  }
  if (!params.realm) return undefined;
  return { realm: params.realm, service: params.service, scope: params.scope, error: params.error };
}

export interface Creds {
  username: string;
  password: string;
}

/** Fetch a token for a challenge (scope from the challenge unless given). */
export async function fetchToken(ch: BearerChallenge, opts: { scope?: string | string[]; creds?: Creds } = {}): Promise<string> {
  const u = new URL(ch.realm);
  if (ch.service) u.searchParams.set("service", ch.service);
  const scopes = opts.scope ?? ch.scope;
  for (const s of Array.isArray(scopes) ? scopes : scopes ? [scopes] : []) u.searchParams.append("scope", s);
  const headers: Record<string, string> = {};
  if (opts.creds) headers.authorization = `Basic ${btoa(`${opts.creds.username}:${opts.creds.password}`)}`;
  const res = await fetch(u, { headers, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`token request ${u} -> ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { token?: string; access_token?: string };
  const tok = body.token ?? body.access_token;
  if (!tok) throw new Error("token response without token");
  return tok;
}

/**
 * fetch() that answers one Bearer challenge: on 401 it gets a token for the
 * challenged scope (optionally with Basic creds) and retries once. Redirects are
 * NOT followed by default (redirect: "manual"), so tests can see 307s.
 */
export async function ociFetch(
  url: string,
  init: RequestInit & { creds?: Creds } = {},
): Promise<Response> {
  const { creds, ...rest } = init;
  const req: RequestInit = { redirect: "manual", ...rest };
  const first = await fetch(url, req);
  if (first.status !== 401) return first;
  const ch = parseBearerChallenge(first.headers.get("www-authenticate"));
  if (!ch) return first;
  await first.body?.cancel();
  const token = await fetchToken(ch, { creds });
  const headers = new Headers(rest.headers);
  headers.set("authorization", `Bearer ${token}`);
  return fetch(url, { ...req, headers });
}
