// Registry results → HTTP responses with the headers clients rely on.
import { contentRange } from "../protocol/range.ts";
import { MediaType } from "../protocol/media-types.ts";
import type { ReferrersResult } from "../registry/referrers.ts";
import type { BlobResult, ManifestResult } from "../registry/results.ts";
import { markStreamed } from "./stream-timeout.ts";

export const API_VERSION_HEADER = { "Docker-Distribution-API-Version": "registry/2.0" } as const;

/** How an answer relates to the cache; a stale one says so the standard way too (RFC 7234's Warning 110). */
export function cacheHeaders(cache: string): Record<string, string> {
  return cache === "stale" ? { "X-Ferry-Cache": cache, Warning: '110 - "Response is Stale"' } : { "X-Ferry-Cache": cache };
}

export function manifestResponse(m: ManifestResult, method: string, extra: Record<string, string>): Response {
  return new Response(method === "HEAD" ? null : m.body, {
    status: 200,
    headers: {
      ...API_VERSION_HEADER,
      ...extra,
      "Content-Type": m.mediaType,
      "Content-Length": String(m.body.byteLength),
      "Docker-Content-Digest": m.digest,
      ETag: `"${m.digest}"`,
    },
  });
}

/** A referrers index: the upstream's bytes, with OCI-Filters-Applied when it filtered. */
export function referrersResponse(r: ReferrersResult, method: string, extra: Record<string, string>): Response {
  return new Response(method === "HEAD" ? null : r.body, {
    status: 200,
    headers: {
      ...API_VERSION_HEADER,
      ...extra,
      ...(r.filtersApplied !== undefined && { "OCI-Filters-Applied": r.filtersApplied }),
      "Content-Type": MediaType.ociIndex,
      "Content-Length": String(r.body.byteLength),
    },
  });
}

export function blobResponse(b: BlobResult, extra: Record<string, string>): Response {
  const headers: Record<string, string> = {
    ...API_VERSION_HEADER,
    ...extra,
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": b.digest,
    "Accept-Ranges": "bytes",
    ETag: `"${b.digest}"`,
    "Cache-Control": "max-age=31536000, immutable",
  };
  let status = 200;
  if (b.range && b.size !== undefined) {
    status = 206;
    headers["Content-Range"] = contentRange(b.range, b.size);
    headers["Content-Length"] = String(b.range.end - b.range.start + 1);
  } else if (b.size !== undefined) {
    headers["Content-Length"] = String(b.size);
  }
  switch (b.body.kind) {
    case "none":
      return new Response(null, { status, headers });
    case "file": {
      // Bun sends a BunFile (or a slice of one) with sendfile(2).
      const file = Bun.file(b.body.path);
      return new Response(b.range ? file.slice(b.range.start, b.range.end + 1) : file, { status, headers });
    }
    case "stream":
      return new Response(b.body.stream, { status, headers: markStreamed(headers) });
    case "redirect":
      // The client fetches (and ranges) the bytes from the shared store itself.
      return new Response(null, { status: 307, headers: { ...API_VERSION_HEADER, ...extra, Location: b.body.url, "Docker-Content-Digest": b.digest } });
  }
}

export function jsonResponse(value: unknown, extra: Record<string, string> = {}, method = "GET"): Response {
  const body = JSON.stringify(value);
  return new Response(method === "HEAD" ? null : body, {
    headers: { ...API_VERSION_HEADER, ...extra, "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(body)) },
  });
}
