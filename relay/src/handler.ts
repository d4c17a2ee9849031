// The relay: a fetch-style handler that forwards registry pulls to an upstream registry, for
// use as a secondary mirror endpoint when the primary one is rate-limited. Web-standard APIs
// only (fetch, Request, Response, URL, Headers, crypto.subtle) so the same code runs on
// Cloudflare Workers and under Bun (`ferry relay`).
import { formatChallenges, isBearer, parseChallenges } from "./challenge.ts";
import { type RelayConfig, resolveRelayConfig } from "./config.ts";
import { API_VERSION_HEADER, RelayError, errorResponse } from "./errors.ts";
import { registryRequestHeaders, responseHeaders, rewriteLink } from "./headers.ts";
import { parseMount, parseRepoRequest, selectRegistry, type RepoRequest } from "./route.ts";
import { secretChecker } from "./secret.ts";
import { fetchUpstream } from "./upstream.ts";

export { parseRelayConfig, RelayConfigError, type RelayConfig, type RelayRegistry } from "./config.ts";

export type RelayHandler = (request: Request) => Promise<Response>;

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
/** Bodies up to this size are buffered rather than streamed (see bodyOf). */
const BUFFER_LIMIT = 4 * 1024 * 1024;

/** `<upstream base>/v2/<path>`; the base may itself carry a path. */
function apiUrl(upstream: URL, path: string): URL {
  return new URL(`${upstream.origin}${upstream.pathname.replace(/\/+$/, "")}/v2/${path}`);
}

export function createRelayHandler(input: RelayConfig): RelayHandler {
  const config = resolveRelayConfig(input);
  const checkSecret = config.secret === undefined ? undefined : secretChecker(config.secret);
  // Upstream token realm per registry, learned from the challenges the relay rewrites, so that
  // /token?upstream=<registry> knows where to go without trusting a URL from the client.
  // Per isolate/process; a miss is filled by asking the registry for a fresh challenge.
  const realms = new Map<string, string>();

  async function handle(request: Request): Promise<Response> {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return errorResponse(405, "UNSUPPORTED", `${request.method} is not supported: the relay is read-only`, { Allow: "GET, HEAD" });
    }
    if (checkSecret) {
      const given = request.headers.get(config.secretHeader);
      if (given === null) return errorResponse(401, "UNAUTHORIZED", `the relay needs its secret in the ${config.secretHeader} header`);
      if (!(await checkSecret(given))) return errorResponse(403, "DENIED", "wrong relay secret");
    }
    const url = new URL(request.url);
    const origin = config.publicUrl ?? url.origin;
    const ns = url.searchParams.get("ns");
    if (url.pathname === "/token") return token(request, url);

    const mount = parseMount(config, url.pathname);
    if (mount.apiPath === "/v2/" || mount.apiPath === "/v2") {
      const chosen = selectRegistry(config, mount, ns);
      // No registry to ask: the relay itself is reachable, which is all /v2/ promises.
      if (!chosen) return new Response("{}", { headers: { "Content-Type": "application/json", [API_VERSION_HEADER[0]]: API_VERSION_HEADER[1] } });
      const viaNs = !mount.registry && ns ? chosen.registry : undefined;
      return relay(request, { ...chosen, path: "", origin, clientApiBase: `${mount.base}/v2/`, ns: viaNs });
    }
    const repo = parseRepoRequest(config, mount, ns);
    if (!repo) return errorResponse(404, "UNSUPPORTED", `${url.pathname} is not a registry pull endpoint`);
    return relayRepo(request, url, repo, origin);
  }

  function relayRepo(request: Request, url: URL, repo: RepoRequest, origin: string): Promise<Response> {
    let path = `${repo.name}/${repo.kind}/${repo.reference}`;
    if (repo.kind === "tags") {
      const query = new URLSearchParams();
      for (const key of ["n", "last"]) {
        const value = url.searchParams.get(key);
        if (value !== null) query.set(key, value);
      }
      const search = query.toString();
      if (search) path += `?${search}`;
    }
    return relay(request, { ...repo, path, origin }, repo.kind === "blobs" ? repo.reference : undefined);
  }

  /** Forwards one API request to a registry and shapes the answer for the client. */
  async function relay(
    request: Request,
    to: { registry: string; upstream: URL; path: string; origin: string; clientApiBase: string; ns: string | undefined },
    blobDigest?: string,
  ): Promise<Response> {
    const method = request.method === "HEAD" ? "HEAD" : "GET";
    const { response, url, hops } = await fetchUpstream({
      url: apiUrl(to.upstream, to.path),
      method,
      headers: registryRequestHeaders(request),
      authOrigin: to.upstream.origin,
      configuredOrigin: to.upstream.origin,
      allowPrivate: config.allowPrivateRedirects,
      timeoutMs: config.upstreamTimeoutMs,
      signal: request.signal,
    });

    // A CDN's own error page (XML from S3, HTML) means nothing to a registry client.
    if (hops > 0 && !response.ok && response.status !== 304) {
      await response.body?.cancel();
      if (response.status === 416) return errorResponse(416, "RANGE_INVALID", "requested range not satisfiable", pickContentRange(response));
      throw new RelayError(502, "UNKNOWN", `blob storage ${url.host} answered ${response.status}`);
    }

    const headers = responseHeaders(response);
    const challenge = headers.get("www-authenticate");
    if (challenge !== null) headers.set("www-authenticate", rewriteChallenge(challenge, to.registry, to.origin));
    const link = headers.get("link");
    if (link !== null) headers.set("link", rewriteLink(link, to.upstream, to.clientApiBase, to.ns));
    if (blobDigest && (response.status === 200 || response.status === 206) && !headers.has("docker-content-digest")) {
      headers.set("docker-content-digest", blobDigest); // CDNs do not send it; the digest is the address
    }
    if (to.ns) headers.set("OCI-Namespace", to.ns);
    headers.set(...API_VERSION_HEADER);

    return new Response(await bodyOf(response, method), { status: response.status, headers });
  }

  /** Points Bearer challenges at the relay's /token, remembering the upstream realm. */
  function rewriteChallenge(header: string, registry: string, origin: string): string {
    const challenges = parseChallenges(header);
    for (const challenge of challenges) {
      if (!isBearer(challenge)) continue; // Basic: the client sends credentials, the relay forwards them
      const realm = challenge.params.realm;
      if (!realm) continue;
      realms.set(registry, realm);
      challenge.params.realm = `${origin}/token?upstream=${encodeURIComponent(registry)}`;
    }
    return formatChallenges(challenges);
  }

  /** GET /token?upstream=<registry>&service=…&scope=…: the registry's token endpoint, relayed. */
  async function token(request: Request, url: URL): Promise<Response> {
    const registry = url.searchParams.get("upstream")?.toLowerCase() ?? config.defaultRegistry;
    const upstream = registry === undefined ? undefined : config.registries.get(registry);
    if (registry === undefined || upstream === undefined) {
      return errorResponse(404, "NAME_UNKNOWN", `registry "${registry ?? ""}" is not served by this relay`);
    }
    const realm = realms.get(registry) ?? (await discoverRealm(registry, upstream));
    let target: URL;
    try {
      target = new URL(realm);
    } catch {
      throw new RelayError(502, "UNKNOWN", `registry ${registry} sent an invalid token realm`);
    }
    url.searchParams.forEach((value, key) => {
      if (key !== "upstream") target.searchParams.append(key, value);
    });

    const headers = new Headers();
    for (const name of ["authorization", "accept", "user-agent"]) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    if (!headers.has("user-agent")) headers.set("user-agent", "ferry-relay");
    headers.set("accept-encoding", "identity");
    const { response } = await fetchUpstream({
      url: target,
      method: "GET",
      headers,
      authOrigin: target.origin, // the client's credentials are meant for the token service
      configuredOrigin: upstream.origin,
      allowPrivate: config.allowPrivateRedirects,
      timeoutMs: config.upstreamTimeoutMs,
      signal: request.signal,
    });
    const out = new Headers({ "Cache-Control": "no-store" });
    out.set(...API_VERSION_HEADER);
    for (const name of ["content-type", "content-length", "retry-after"]) {
      const value = response.headers.get(name);
      if (value !== null) out.set(name, value);
    }
    if (response.headers.has("content-encoding")) out.delete("content-length");
    return new Response(await bodyOf(response, request.method), { status: response.status, headers: out });
  }

  /** Asks the registry's /v2/ for a challenge when this isolate has not seen one yet. */
  async function discoverRealm(registry: string, upstream: URL): Promise<string> {
    const { response } = await fetchUpstream({
      url: apiUrl(upstream, ""),
      method: "GET",
      headers: new Headers({ "user-agent": "ferry-relay", "accept-encoding": "identity" }),
      authOrigin: upstream.origin,
      configuredOrigin: upstream.origin,
      allowPrivate: config.allowPrivateRedirects,
      timeoutMs: config.upstreamTimeoutMs,
    });
    await response.body?.cancel();
    const bearer = parseChallenges(response.headers.get("www-authenticate")).find(isBearer);
    const realm = bearer?.params.realm;
    if (!realm) throw new RelayError(404, "UNSUPPORTED", `registry ${registry} does not use token authentication`);
    realms.set(registry, realm);
    return realm;
  }

  return async (request) => {
    let response: Response;
    try {
      response = await handle(request);
    } catch (error) {
      if (error instanceof RelayError) {
        response = errorResponse(error.status, error.code, error.message);
      } else {
        console.error("ferry relay: unexpected error", error);
        response = errorResponse(500, "UNKNOWN", "internal relay error");
      }
    }
    if (request.method === "HEAD" && response.body !== null) {
      await response.body.cancel();
      response = new Response(null, { status: response.status, headers: response.headers });
    }
    return response;
  };
}

/**
 * The body to hand on. Small bodies (manifests, tokens, errors) are read whole: Bun.serve drops
 * Content-Length from streamed responses, and clients like to see it on manifests. Blobs stream.
 */
async function bodyOf(response: Response, method: string): Promise<ReadableStream<Uint8Array> | ArrayBuffer | null> {
  if (method === "HEAD" || NULL_BODY_STATUSES.has(response.status)) {
    await response.body?.cancel();
    return null;
  }
  const length = Number(response.headers.get("content-length") ?? NaN);
  if (length <= BUFFER_LIMIT && !response.headers.has("content-encoding")) return response.arrayBuffer();
  return response.body;
}

function pickContentRange(response: Response): Record<string, string> {
  const value = response.headers.get("content-range");
  return value === null ? {} : { "Content-Range": value };
}
