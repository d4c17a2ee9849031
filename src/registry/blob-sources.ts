// Where a blob download reads from. The download itself (blob-download.ts) only knows
// "open at offset"; resuming and tier skipping live here, the Range details in the registry client.
import type { BlobKey } from "../cache/blob-store.ts";
import type { RemoteBlobStore } from "../cache/remote-blob-store.ts";
import type { Credentials } from "../upstream/auth.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";

export interface OpenedBody {
  /** Total size of the blob, when the source knows it. */
  size: number | undefined;
  /** Bytes from the requested offset to the end, in chunks nobody else holds (a piped download hands them to another thread). */
  body: ReadableStream<Uint8Array>;
  /** Silence longer than this means the body is broken. */
  stallTimeoutMs: number;
  /** Paced in JavaScript (max_bandwidth): its chunks pass through JS anyway, so it is not piped. */
  paced?: boolean;
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
  /** The tier whose body is being read; undefined while opening (an open that fails is the tiers' own record). */
  private reading: Endpoint | undefined;
  /** The tier whose body broke last: a resume goes elsewhere if it can, else back to it. */
  private broken: Endpoint | undefined;

  constructor(
    private readonly client: RegistryClient,
    private readonly repository: string,
    private readonly key: BlobKey,
    private readonly credentials?: Credentials,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    this.reading = undefined;
    const opened = await this.client.openBlob(this.repository, this.key.digest, { from: offset, signal, credentials: this.credentials, ...this.resumeRoute() });
    if (!opened.found) throw opened.error;
    this.reading = opened.endpoint;
    return { size: opened.size, body: opened.body, stallTimeoutMs: opened.endpoint.config.stallTimeoutMs, paced: opened.paced };
  }

  /**
   * Where a resume may go: another tier that is not resting; else the one whose body just
   * broke (it was answering a moment ago). Never a resting tier that failed to answer at
   * all: that would pay its timeout again on every resume.
   */
  private resumeRoute(): { skip?: Endpoint[]; ifAllResting?: "probe" | "fail" } {
    const broken = this.broken;
    if (!broken) return {};
    const others = this.client.upstream.blobEndpoints.filter((e) => e !== broken);
    if (others.some((e) => e.health.snapshot().available)) return { skip: [broken], ifAllResting: "fail" };
    return { skip: others, ifAllResting: "probe" };
  }

  bodyFailed(error: Error): boolean {
    // Only a body that broke is its tier's fault; a failed open was recorded by the tiers themselves.
    if (this.reading) {
      this.client.upstream.reportBodyFailure(this.reading, error.message);
      this.broken = this.reading;
      this.reading = undefined;
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

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    const opened = await this.remote.open(this.key, offset > 0 ? { start: offset, end: this.size - 1 } : undefined, signal);
    // The GET's own length is authoritative over the earlier stat.
    return { size: opened.size ?? this.size, body: opened.body, stallTimeoutMs: 30_000 };
  }

  bodyFailed(): boolean {
    return true;
  }
}
