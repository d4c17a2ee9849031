// The pull side of the OCI distribution API under /v2/. Pull-only: every write method
// answers 405 UNSUPPORTED. Access control (access/access.ts) is asked before anything
// is looked up or fetched.
import { Elysia } from "elysia";
import type { AccessControl } from "../access/access.ts";
import { peerOf } from "../access/client-ip.ts";
import { RegistryError } from "../protocol/errors.ts";
import { parseAccept } from "../protocol/media-types.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import type { Mirror } from "../registry/mirror.ts";
import type { BlobResult } from "../registry/results.ts";
import { paginate } from "../registry/tags.ts";
import type { Credentials } from "../upstream/auth.ts";
import { parseApiPath, routeName, type RoutedName } from "../routing/route.ts";
import { toRegistryErrorResponse } from "./errors.ts";
import { cachedFileStream } from "./file-stream.ts";
import { annotate } from "./request-log.ts";
import { requestUrl } from "../protocol/request-url.ts";
import { API_VERSION_HEADER, blobResponse, cacheHeaders, jsonResponse, manifestResponse, referrersResponse } from "./responses.ts";

const MAX_PAGE_SIZE = 10_000;

/** What the /v2/ routes use: the pull services and their counters, not the whole Mirror. */
export type RegistryApiServices = Pick<Mirror, "manifests" | "blobs" | "tags" | "referrers" | "membership" | "metrics" | "traffic" | "meta" | "registries" | "log">;

/**
 * One route for all of /v2/, dispatched by parseApiPath: a repository name spans any number
 * of path segments before /manifests/, /blobs/, /tags/ or /referrers/, and Elysia's router
 * takes a wildcard only at the end of a pattern, so it cannot tell these endpoints apart.
 * Measured: parseApiPath is under 1% of a warm manifest request's CPU (bench scenario 2).
 */
export function registryApi(mirror: RegistryApiServices, access: AccessControl) {
  const handle = async (request: Request, peer: string): Promise<Response> => {
    const method = request.method;
    try {
      const url = requestUrl(request);
      // The raw (still percent-encoded) path: names are validated as written, so
      // an encoded "/" or "." can never sneak past the grammar.
      const rest = url.pathname.replace(/^\/v2\/?/, "");
      if (method === "OPTIONS") return new Response(null, { status: 204, headers: { ...API_VERSION_HEADER, Allow: "GET, HEAD, OPTIONS" } });
      if (method !== "GET" && method !== "HEAD") {
        throw new RegistryError("UNSUPPORTED", "ferry is a pull-only mirror: only GET and HEAD are supported", { headers: { Allow: "GET, HEAD, OPTIONS" } });
      }
      const client = await access.admit(request, peer);
      const api = parseApiPath(rest);
      switch (api.kind) {
        case "base":
          access.base(request, client);
          return jsonResponse({}, {}, method);
        case "catalog":
          if (!(await access.admin(request, peer))) throw access.challenge(request, "registry:catalog:*");
          return await catalog(mirror.meta, url, method);
        case "upload":
          throw new RegistryError("UNSUPPORTED", "ferry is a pull-only mirror: uploads are not supported");
      }
      const routed = routeName(api.name, { host: request.headers.get("host"), ns: url.searchParams.get("ns") }, mirror.registries);
      annotate(request, { registry: routed.registry.name });
      const { credentials } = await access.authorize(request, client, routed.registry, routed.repository, api.name);
      const extra: Record<string, string> = routed.via === "ns" ? { "OCI-Namespace": routed.registry.name } : {};
      const repo = { registry: routed.registry.name, repository: routed.repository };
      switch (api.kind) {
        case "manifest": {
          // Repeated Accept headers arrive comma-joined.
          const accept = parseAccept([request.headers.get("accept") ?? ""]);
          const m = await mirror.manifests.get({ repo, reference: api.reference, accept, method, credentials });
          annotate(request, { cache: m.cache });
          if (routed.registry.passthroughAuth) mirror.membership.noteManifest(repo, m.body);
          mirror.metrics.countCacheResult("manifest", m.cache, m.cache === "miss" || m.cache === "bypass" ? "upstream" : "local");
          if (m.cache === "stale") mirror.metrics.countStale(repo.registry, "manifest");
          return manifestResponse(m, method, { ...extra, ...cacheHeaders(m.cache) });
        }
        case "blob": {
          const limits = method === "GET" ? await access.admitDownload(client) : undefined;
          // The slot goes with the body; an answer without one (an error, a 307) gives it back here.
          let slotHandedOver = false;
          try {
            const b = await mirror.blobs.get({ ...repo, digest: api.digest, method, range: request.headers.get("range"), credentials });
            annotate(request, { cache: b.cache });
            const bytes = recordBlob(mirror, b, method);
            limits?.addBytes(bytes);
            const tracked = limits?.wrap ? trackedBody(b, limits.wrap, limits.paced) : b;
            const response = blobResponse(tracked, { ...extra, ...cacheHeaders(b.cache) });
            slotHandedOver = tracked !== b;
            return response;
          } finally {
            if (!slotHandedOver) limits?.release();
          }
        }
        case "tags":
          return await tagList(mirror, routed, api.name, url, method, extra, credentials);
        case "referrers": {
          const r = await mirror.referrers.get({ repo, digest: api.digest, query: url.searchParams, credentials });
          annotate(request, { cache: r.cache });
          mirror.metrics.countCacheResult("referrers", r.cache, r.cache === "miss" ? "upstream" : "local");
          // The next page goes through this mirror, under the client's own path (and ns).
          const ns = url.searchParams.get("ns");
          const next = r.nextQuery === undefined ? undefined : `${url.pathname}?${r.nextQuery}${ns ? `&${new URLSearchParams({ ns })}` : ""}`;
          return referrersResponse(r, method, { ...extra, "X-Ferry-Cache": r.cache, ...(next && { Link: `<${next}>; rel="next"` }) });
        }
      }
    } catch (error) {
      const { error: registryError, response } = toRegistryErrorResponse(error, method);
      if (registryError.status >= 500) mirror.log.warn({ path: requestUrl(request).pathname, code: registryError.code, error: registryError.message }, "request failed");
      // An upstream 401 comes without a challenge of ours: docker and containerd then print
      // a confusing error. Ferry's own (with [auth]) says where to log in; else a Basic one.
      if (registryError.status === 401 && !response.headers.has("www-authenticate")) response.headers.set("WWW-Authenticate", access.loginChallenge(request, pullScopeOf(request)));
      return response;
    }
  };
  return new Elysia({ name: "registry-api" })
    .all("/v2", ({ request, server }) => handle(request, peerOf(request, server)))
    .all("/v2/*", ({ request, server }) => handle(request, peerOf(request, server)));
}

/** `repository:<name>:pull` for a /v2/<name>/(manifests|blobs|tags)/… path, as the client wrote the name. */
function pullScopeOf(request: Request): string | undefined {
  const m = /^\/v2\/(.+)\/(?:manifests|blobs|tags)\//.exec(requestUrl(request).pathname);
  return m ? `repository:${m[1]}:pull` : undefined;
}

/**
 * Cache outcome and bytes sent (as declared: a client that leaves early is counted whole).
 * Returns what the byte budget is charged: a redirect costs the blob's size too, or a
 * budget would bound nothing once the shared store answers with 307s.
 */
function recordBlob(mirror: Pick<Mirror, "metrics" | "traffic">, b: BlobResult, method: string): number {
  mirror.metrics.countCacheResult("blob", b.cache, b.source);
  if (method !== "GET") return 0;
  if (b.body.kind === "redirect") return b.size ?? 0;
  const bytes = b.range ? b.range.end - b.range.start + 1 : (b.size ?? 0);
  mirror.metrics.bytesServed.inc({ source: b.source }, bytes);
  mirror.traffic.served(b.source !== "upstream", bytes);
  return bytes;
}

/**
 * A body whose end is observed (to release a concurrent-download slot) or paced. Cached
 * files then go out as a stream instead of sendfile: only for clients under those limits.
 */
function trackedBody(b: BlobResult, wrap: (body: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>, paced: boolean): BlobResult {
  if (b.body.kind === "stream") return { ...b, body: { kind: "stream", stream: wrap(b.body.stream) } };
  if (b.body.kind === "file") {
    const stream = cachedFileStream(b.body.path, b.range?.start ?? 0, b.range ? b.range.end + 1 : (b.size ?? Bun.file(b.body.path).size), paced ? PACED_FILE_READ_BYTES : FILE_READ_BYTES);
    return { ...b, body: { kind: "stream", stream: wrap(stream) } };
  }
  return b;
}

/** Bytes read per pull of a tracked file: each stream holds one buffer this size. */
const FILE_READ_BYTES = 1024 * 1024;
/** The same for a paced file: a bandwidth slice, since a paced stream waits with its buffer. */
const PACED_FILE_READ_BYTES = 64 * 1024;

function pageParams(url: URL): { n: number | undefined; last: string | undefined } {
  const nText = url.searchParams.get("n");
  let n: number | undefined;
  if (nText !== null) {
    if (!/^\d{1,9}$/.test(nText)) throw new RegistryError("UNSUPPORTED", `invalid page size n="${nText.slice(0, 20)}"`, { status: 400 });
    n = Math.min(Number(nText), MAX_PAGE_SIZE);
  }
  return { n, last: url.searchParams.get("last") ?? undefined };
}

function linkHeader(path: string, n: number | undefined, next: string | undefined, extraQuery: Record<string, string> = {}): Record<string, string> {
  if (next === undefined || n === undefined) return {};
  const query = new URLSearchParams({ ...extraQuery, n: String(n), last: next });
  return { Link: `<${path}?${query}>; rel="next"` };
}

async function tagList(mirror: Pick<Mirror, "tags" | "metrics">, routed: RoutedName, clientName: string, url: URL, method: string, extra: Record<string, string>, credentials: Credentials | undefined): Promise<Response> {
  const { n, last } = pageParams(url);
  const { tags: all, stale } = await mirror.tags.list({ registry: routed.registry.name, repository: routed.repository }, credentials);
  if (stale) mirror.metrics.countStale(routed.registry.name, "tags");
  const page = paginate(all, n, last);
  const ns = url.searchParams.get("ns");
  return jsonResponse({ name: clientName, tags: page.items }, { ...extra, ...(stale && cacheHeaders("stale")), ...linkHeader(url.pathname, n, page.next, ns ? { ns } : {}) }, method);
}

async function catalog(meta: Pick<MetaStore, "listRepositories">, url: URL, method: string): Promise<Response> {
  const { n, last } = pageParams(url);
  const repos = (await meta.listRepositories()).map((r) => (r.registry === "docker.io" ? r.repository : `${r.registry}/${r.repository}`)).sort();
  const page = paginate(repos, n, last);
  return jsonResponse({ repositories: page.items }, linkHeader(url.pathname, n, page.next), method);
}

