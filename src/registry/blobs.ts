// Blob pulls: cache first, then a shared upstream download. HEAD on an uncached blob is
// answered from an upstream HEAD and never starts a download.
import type { BlobKey, BlobStore } from "../cache/blob-store.ts";
import type { Logger } from "../observe/logger.ts";
import { RegistryError } from "../protocol/errors.ts";
import { parseRange, type ByteRange } from "../protocol/range.ts";
import { failureFromResponse, UpstreamError } from "../upstream/errors.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { BlobDownload } from "./blob-download.ts";
import type { BlobResult } from "./results.ts";
import { toRegistryError } from "./upstream-errors.ts";

export interface BlobRequest {
  registry: string;
  repository: string;
  digest: string;
  method: "GET" | "HEAD";
  range: string | null;
}

export class BlobService {
  private readonly downloads = new Map<string, BlobDownload>();

  constructor(
    private readonly store: BlobStore,
    private readonly upstreamFor: (registry: string) => Upstream,
    private readonly log: Logger,
  ) {}

  /** Downloads in progress (for status pages and draining). */
  get inFlight(): ReadonlyMap<string, BlobDownload> {
    return this.downloads;
  }

  async get(req: BlobRequest): Promise<BlobResult> {
    const key: BlobKey = { registry: req.registry, digest: req.digest };
    const what = `blob ${req.digest} of ${req.repository}`;
    const cached = await this.store.stat(key);
    if (cached) {
      this.store.touch(key);
      const range = rangeOf(req.range, cached.size);
      return { digest: req.digest, size: cached.size, range, body: req.method === "HEAD" ? { kind: "none" } : { kind: "file", path: cached.path }, cache: "hit" };
    }
    let download = this.downloads.get(keyString(key));
    if (req.method === "HEAD") {
      if (download?.size !== undefined) return { digest: req.digest, size: download.size, body: { kind: "none" }, cache: "miss" };
      return this.headUpstream(req, what);
    }
    if (!download) download = this.startDownload(key, req.repository);
    let size: number | undefined;
    try {
      size = await download.ready;
    } catch (error) {
      throw toRegistryError(error, "BLOB_UNKNOWN", what);
    }
    const range = size === undefined ? undefined : rangeOf(req.range, size);
    const stream = range ? download.reader(range.start, range.end + 1) : download.reader(0, undefined);
    return { digest: req.digest, size, range, body: { kind: "stream", stream }, cache: "miss" };
  }

  private startDownload(key: BlobKey, repository: string): BlobDownload {
    const id = keyString(key);
    const download = BlobDownload.start({ upstream: this.upstreamFor(key.registry), store: this.store, key, repository, log: this.log });
    this.downloads.set(id, download);
    // Leave the map only once the blob is in the store (or the download failed), so a
    // request arriving in between finds one or the other.
    download.finished.then(() => this.downloads.delete(id));
    return download;
  }

  private async headUpstream(req: BlobRequest, what: string): Promise<BlobResult> {
    try {
      const { response, endpoint } = await this.upstreamFor(req.registry).request({ method: "HEAD", path: `/v2/${req.repository}/blobs/${req.digest}`, repository: req.repository }, "blob");
      if (!response.ok) throw new UpstreamError(endpoint.url, await failureFromResponse(response));
      const length = response.headers.get("content-length");
      return { digest: req.digest, size: length && /^\d+$/.test(length) ? Number(length) : undefined, body: { kind: "none" }, cache: "miss" };
    } catch (error) {
      throw toRegistryError(error, "BLOB_UNKNOWN", what);
    }
  }
}

function keyString(key: BlobKey): string {
  return `${key.registry}/${key.digest}`;
}

function rangeOf(header: string | null, size: number): ByteRange | undefined {
  const parsed = parseRange(header, size);
  if (parsed.kind === "unsatisfiable") {
    throw new RegistryError("RANGE_INVALID", `requested range not satisfiable for a blob of ${size} bytes`, { headers: { "Content-Range": `bytes */${size}` } });
  }
  return parsed.kind === "range" ? parsed.range : undefined;
}
