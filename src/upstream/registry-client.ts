// The upstream registry as a typed client: the distribution API's paths, status checks and
// headers (Docker-Content-Digest, Content-Length, Link) live here, so registry/ keeps only
// caching policy. Tier choice, auth, redirects and deadlines stay in Upstream/Endpoint.
// A registry's answer is a value (Found, or NotFound for its 404); every other failure is
// thrown as UpstreamError (or TokenFetchError, or InvalidAnswer for bytes that are not what
// was asked for). `openBlob(repo, digest, { from })` resumes a broken download at a byte
// offset (on the next tier, with `skip`), whether or not the registry honours Range.
import { parseDigest } from "../protocol/digest.ts";
import { MediaType } from "../protocol/media-types.ts";
import { parseContentRange } from "../protocol/range.ts";
import { TokenFetchError, type Credentials } from "./auth.ts";
import type { Endpoint } from "./endpoint.ts";
import { failureFromResponse, InvalidAnswer, UpstreamError } from "./errors.ts";
import type { Upstream } from "./upstream.ts";

export type Found<T> = { found: true } & T;
/** The registry's own 404 (its error JSON kept in `error`, for the code it named). */
export type NotFound = { found: false; error: UpstreamError };

export interface ReadOptions {
  accept?: readonly string[];
  /** A passthrough client's own upstream credentials instead of the endpoint's. */
  credentials?: Credentials;
  /** When every tier rests: "probe" asks them anyway, "fail" throws at once (a cached copy waits). */
  ifAllResting?: "probe" | "fail";
}

export interface ManifestHead {
  /** Docker-Content-Digest, when the registry sent a valid one. */
  digest: string | undefined;
}

export interface FetchedManifest {
  body: Uint8Array;
  /** Docker-Content-Digest, when the registry sent a valid one. */
  digest: string | undefined;
  /** Content-Type without parameters, when sent. */
  contentType: string | undefined;
}

export interface ReferrersIndex {
  /** An OCI image index whose manifests are the referrers. */
  body: Uint8Array;
  /** OCI-Filters-Applied, as sent. */
  filtersApplied?: string;
  /** The query of the next page (ns dropped: the mirror adds its own). */
  nextQuery?: string;
}

export interface BlobHead {
  /** Content-Length, when the registry sent one. */
  size: number | undefined;
}

export interface OpenBlobOptions {
  /** Byte offset to start at (a resume); the body always starts there. */
  from?: number;
  signal?: AbortSignal;
  credentials?: Credentials;
  /** Tiers to pass over (a resume: the one whose body just broke, or all but it). */
  skip?: readonly Endpoint[];
  /** When every other tier rests: "probe" asks them anyway (a first try), "fail" asks none. */
  ifAllResting?: "probe" | "fail";
}

export interface OpenedBlob {
  /** Total size of the blob (not of the part sent), when the registry said. */
  size: number | undefined;
  /** Bytes from `from` to the end, paced by the endpoint's max_bandwidth. */
  body: ReadableStream<Uint8Array>;
  /** The body passes through a JavaScript pacer (max_bandwidth): nothing to gain by piping it natively. */
  paced: boolean;
  /** The tier that answered (its stall timeout; where to report a body that broke). */
  endpoint: Endpoint;
}

/** Manifests and referrers indexes are small; anything bigger than this from upstream is refused. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TAG_PAGES = 100;

export class RegistryClient {
  constructor(readonly upstream: Upstream) {}

  async headManifest(repository: string, reference: string, options: ReadOptions = {}): Promise<Found<ManifestHead> | NotFound> {
    const { response, endpoint } = await this.upstream.request({ method: "HEAD", path: `/v2/${repository}/manifests/${reference}`, repository, accept: options.accept, credentials: options.credentials }, "manifest", undefined, options.ifAllResting);
    if (!response.ok) return this.notFoundOrThrow(response, endpoint.url);
    return { found: true, digest: validDigest(response.headers.get("docker-content-digest")) };
  }

  async getManifest(repository: string, reference: string, options: ReadOptions = {}): Promise<Found<FetchedManifest> | NotFound> {
    const { response, endpoint } = await this.upstream.request({ method: "GET", path: `/v2/${repository}/manifests/${reference}`, repository, accept: options.accept, credentials: options.credentials }, "manifest", undefined, options.ifAllResting);
    if (!response.ok) return this.notFoundOrThrow(response, endpoint.url);
    const body = await boundedBody(response, "manifest");
    return { found: true, body, digest: validDigest(response.headers.get("docker-content-digest")), contentType: response.headers.get("content-type")?.split(";")[0]?.trim() || undefined };
  }

  /** Every tag, across the registry's Link pages (bounded), in the order they came, without repeats. */
  async listTags(repository: string, options: ReadOptions = {}): Promise<Found<{ tags: string[] }> | NotFound> {
    const tags = new Set<string>();
    let path: string | undefined = `/v2/${repository}/tags/list`;
    for (let page = 0; path && page < MAX_TAG_PAGES; page++) {
      const { response, endpoint } = await this.upstream.request({ method: "GET", path, repository, credentials: options.credentials }, "manifest", undefined, options.ifAllResting);
      if (!response.ok) return this.notFoundOrThrow(response, endpoint.url);
      const body = (await response.json()) as { tags?: unknown };
      if (Array.isArray(body.tags)) for (const t of body.tags) if (typeof t === "string") tags.add(t);
      path = nextPagePath(response.headers.get("link"));
    }
    return { found: true, tags: [...tags] };
  }

  /** The referrers of `digest` (`search`: the client's filter and page cursor), as a checked OCI image index. */
  async referrers(repository: string, digest: string, search: string, options: ReadOptions = {}): Promise<Found<ReferrersIndex> | NotFound> {
    const path = `/v2/${repository}/referrers/${digest}${search ? `?${search}` : ""}`;
    const { response, endpoint } = await this.upstream.request({ method: "GET", path, repository, accept: [MediaType.ociIndex], credentials: options.credentials }, "manifest", undefined, options.ifAllResting);
    if (!response.ok) return this.notFoundOrThrow(response, endpoint.url);
    const body = await boundedBody(response, "referrers index");
    // Never cache or pass on what is not an image index.
    if (!isImageIndex(body)) throw new InvalidAnswer("upstream referrers answer is not an OCI image index");
    return { found: true, body, filtersApplied: response.headers.get("oci-filters-applied") ?? undefined, nextQuery: nextPageQuery(response.headers.get("link")) };
  }

  async headBlob(repository: string, digest: string, options: { credentials?: Credentials } = {}): Promise<Found<BlobHead> | NotFound> {
    const { response, endpoint } = await this.upstream.request({ method: "HEAD", path: `/v2/${repository}/blobs/${digest}`, repository, credentials: options.credentials }, "blob");
    if (!response.ok) return this.notFoundOrThrow(response, endpoint.url);
    return { found: true, size: contentLength(response) };
  }

  async openBlob(repository: string, digest: string, options: OpenBlobOptions = {}): Promise<Found<OpenedBlob> | NotFound> {
    const from = options.from ?? 0;
    const { response, endpoint } = await this.upstream.request(
      { method: "GET", path: `/v2/${repository}/blobs/${digest}`, repository, range: from > 0 ? `bytes=${from}-` : undefined, signal: options.signal, credentials: options.credentials },
      "blob",
      options.skip,
      options.ifAllResting,
    );
    if (response.status !== 200 && response.status !== 206) return this.notFoundOrThrow(response, endpoint.url);
    if (!response.body) throw new UpstreamError(endpoint.url, { kind: "network", message: "empty body" });
    let size: number | undefined;
    let body = response.body;
    if (response.status === 206) {
      const range = parseContentRange(response.headers.get("content-range"));
      if (!range || range.start !== from) {
        await response.body.cancel();
        throw new UpstreamError(endpoint.url, { kind: "network", message: "upstream answered a different range" });
      }
      size = range.size;
    } else {
      size = contentLength(response);
      // An upstream that ignores Range sends the whole blob again: drop what we have.
      if (from > 0) body = body.pipeThrough(skipBytes(from));
    }
    const paced = this.upstream.shapeBlobBody(endpoint, body);
    return { found: true, size, body: paced, paced: paced !== body, endpoint };
  }

  /**
   * Whether the upstream accepts these credentials (undefined: anonymous): for reading
   * `repository`, or with none named, at all (a `docker login` through ferry). A one-tag
   * listing is the cheapest request that needs read access (and is not a pull).
   */
  async accepts(credentials: Credentials | undefined, repository?: string): Promise<boolean> {
    try {
      const path = repository === undefined ? "/v2/" : `/v2/${repository}/tags/list?n=1`;
      const { response } = await this.upstream.request({ method: "GET", path, repository, credentials });
      await response.body?.cancel();
      return response.ok;
    } catch (error) {
      if (error instanceof TokenFetchError && error.status !== undefined && error.status < 500) return false;
      throw error;
    }
  }

  /** A 404 is the registry's answer; any other non-2xx is a failure. */
  private async notFoundOrThrow(response: Response, endpoint: string): Promise<NotFound> {
    const error = new UpstreamError(endpoint, await failureFromResponse(response));
    if (response.status === 404) return { found: false, error };
    throw error;
  }
}

function contentLength(response: Response): number | undefined {
  const length = response.headers.get("content-length");
  return length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
}

function skipBytes(count: number): TransformStream<Uint8Array, Uint8Array> {
  let remaining = count;
  return new TransformStream({
    transform(chunk, controller) {
      if (remaining >= chunk.byteLength) {
        remaining -= chunk.byteLength;
        return;
      }
      controller.enqueue(remaining > 0 ? chunk.subarray(remaining) : chunk);
      remaining = 0;
    },
  });
}

function validDigest(header: string | null): string | undefined {
  return header && parseDigest(header) ? header : undefined;
}

async function boundedBody(response: Response, what: string): Promise<Uint8Array> {
  const length = Number(response.headers.get("content-length") ?? 0);
  if (length > MAX_MANIFEST_BYTES) {
    await response.body?.cancel();
    throw new InvalidAnswer(`upstream ${what} too large (${length} bytes)`);
  }
  const body = new Uint8Array(await response.arrayBuffer());
  if (body.byteLength > MAX_MANIFEST_BYTES) throw new InvalidAnswer(`upstream ${what} too large`);
  return body;
}

function isImageIndex(body: Uint8Array): boolean {
  try {
    const v = JSON.parse(new TextDecoder().decode(body)) as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown };
    return v.schemaVersion === 2 && Array.isArray(v.manifests) && (v.mediaType === undefined || v.mediaType === MediaType.ociIndex);
  } catch {
    return false;
  }
}

function nextLink(link: string | null): URL | undefined {
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  return m ? new URL(m[1]!, "http://upstream.invalid") : undefined;
}

/** `Link: </v2/x/tags/list?last=a&n=100>; rel="next"` → its path, if it stays on /v2/. */
export function nextPagePath(link: string | null): string | undefined {
  const url = nextLink(link);
  return url?.pathname.startsWith("/v2/") ? url.pathname + url.search : undefined;
}

/** `Link: <https://r.example/v2/x/referrers/sha256:…?n=10&last=…>; rel="next"` → "n=10&last=…" (ns dropped: the mirror adds its own). */
export function nextPageQuery(link: string | null): string | undefined {
  const url = nextLink(link);
  if (!url) return undefined;
  url.searchParams.delete("ns");
  const search = url.searchParams.toString();
  return search === "" ? undefined : search;
}
