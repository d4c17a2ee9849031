// Where a blob download reads from. The download itself (blob-download.ts) only knows
// "open at offset"; resuming, tier skipping and the Range details live here.
import type { BlobKey } from "../cache/blob-store.ts";
import type { RemoteBlobStore } from "../cache/remote-blob-store.ts";
import { parseContentRange } from "../protocol/range.ts";
import type { Credentials } from "../upstream/auth.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { failureFromResponse, UpstreamError } from "../upstream/errors.ts";
import type { Upstream } from "../upstream/upstream.ts";

export interface OpenedBody {
  /** Total size of the blob, when the source knows it. */
  size: number | undefined;
  /** Bytes from the requested offset to the end. */
  body: ReadableStream<Uint8Array>;
  /** Silence longer than this means the body is broken. */
  stallTimeoutMs: number;
}

export interface BlobSource {
  readonly kind: "upstream" | "shared-store" | "peer";
  open(offset: number, signal: AbortSignal): Promise<OpenedBody>;
  /** The body opened last broke (or stalled); true when asking again is worthwhile. */
  bodyFailed(error: Error): boolean;
}

/** The registry's upstream tiers; a resume skips the endpoint that just failed. */
export class UpstreamBlobSource implements BlobSource {
  readonly kind = "upstream";
  private last: Endpoint | undefined;
  private skip: Endpoint | undefined;

  constructor(
    private readonly upstream: Upstream,
    private readonly repository: string,
    private readonly key: BlobKey,
    private readonly credentials?: Credentials,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    const { response, endpoint } = await this.upstream.request(
      { method: "GET", path: `/v2/${this.repository}/blobs/${this.key.digest}`, repository: this.repository, range: offset > 0 ? `bytes=${offset}-` : undefined, signal, credentials: this.credentials },
      "blob",
      this.skip,
    );
    this.last = endpoint;
    if (response.status !== 200 && response.status !== 206) throw new UpstreamError(endpoint.url, await failureFromResponse(response));
    if (!response.body) throw new UpstreamError(endpoint.url, { kind: "network", message: "empty body" });
    let size: number | undefined;
    let body = response.body;
    if (response.status === 206) {
      const range = parseContentRange(response.headers.get("content-range"));
      if (!range || range.start !== offset) {
        await response.body.cancel();
        throw new UpstreamError(endpoint.url, { kind: "network", message: "upstream answered a different range" });
      }
      size = range.size;
    } else {
      const length = response.headers.get("content-length");
      size = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
      // An upstream that ignores Range sends the whole blob again: drop what we have.
      if (offset > 0) body = body.pipeThrough(skipBytes(offset));
    }
    return { size, body: this.upstream.shapeBlobBody(endpoint, body), stallTimeoutMs: endpoint.config.stallTimeoutMs };
  }

  bodyFailed(error: Error): boolean {
    if (this.last) {
      this.upstream.reportBodyFailure(this.last, error.message);
      // Ask the next tier for the rest (the same one again if it is the only one).
      this.skip = this.upstream.blobEndpoints.length > 1 ? this.last : undefined;
    }
    return true;
  }
}

/** The shared blob store (S3) that another replica already filled. */
export class SharedStoreBlobSource implements BlobSource {
  readonly kind = "shared-store";

  constructor(
    private readonly remote: RemoteBlobStore,
    private readonly key: BlobKey,
    private readonly size: number,
  ) {}

  async open(offset: number): Promise<OpenedBody> {
    const opened = await this.remote.open(this.key, offset > 0 ? { start: offset, end: this.size - 1 } : undefined);
    // The GET's own length is authoritative over the earlier stat.
    return { size: opened.size ?? this.size, body: opened.body, stallTimeoutMs: 30_000 };
  }

  bodyFailed(): boolean {
    return true;
  }
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
