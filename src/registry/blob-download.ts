// One upstream download of a blob, shared by every client that asks for it while it
// runs (single-flight). Bytes go to a temp file as they arrive and are hashed; each
// client reads the temp file from its own offset as the download progresses, so a
// slow client never slows the download and nothing is buffered in memory. If the
// upstream breaks mid-body, the download resumes with Range from the byte reached.
// The blob is published only after digest and length are verified; if they are
// wrong, every client that has not yet received the last byte gets a failed stream.
import { open, type FileHandle } from "node:fs/promises";
import type { BlobKey, BlobStore, BlobWriter } from "../cache/blob-store.ts";
import type { Logger } from "../observe/logger.ts";
import { parseContentRange } from "../protocol/range.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { failureFromResponse, UpstreamError } from "../upstream/errors.ts";
import type { Upstream } from "../upstream/upstream.ts";

const READ_CHUNK = 256 * 1024;
/** Resumes after a broken or stalled upstream body, each from the byte reached. */
const MAX_ATTEMPTS = 4;

export interface DownloadOptions {
  upstream: Upstream;
  store: BlobStore;
  key: BlobKey;
  repository: string;
  log: Logger;
}

type State = "running" | "done" | "failed";

export class BlobDownload {
  state: State = "running";
  /** Total length, known once the upstream answered. */
  size: number | undefined;
  written = 0;
  error: Error | undefined;
  /** Resolves with the size once upstream headers arrived; rejects if the download fails first. */
  readonly ready: Promise<number | undefined>;
  /** Resolves when the download is over (committed or failed); never rejects. */
  readonly finished: Promise<void>;

  private resolveReady!: (size: number | undefined) => void;
  private rejectReady!: (error: Error) => void;
  private waiters: (() => void)[] = [];
  private readers = 0;
  private readHandle: Promise<FileHandle> | undefined;
  private writer: BlobWriter | undefined;

  private constructor(private readonly opts: DownloadOptions) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // observed by readers; a download nobody waits on must not crash
    this.finished = this.run().then(
      () => undefined,
      () => undefined,
    );
  }

  static start(opts: DownloadOptions): BlobDownload {
    return new BlobDownload(opts);
  }

  /**
   * A stream of bytes [start, end) of the blob as the download provides them.
   * The final byte of the blob is held back until the digest is verified.
   */
  reader(start: number, end: number | undefined): ReadableStream<Uint8Array> {
    this.readers++;
    let position = start;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.readers--;
      this.maybeCloseReadHandle();
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            const chunk = await this.readAt(position, end);
            if (chunk === null) {
              release();
              controller.close();
              return;
            }
            position += chunk.byteLength;
            controller.enqueue(chunk);
          } catch (error) {
            release();
            controller.error(error);
          }
        },
        cancel: release,
      },
      { highWaterMark: 0 },
    );
  }

  /** Next bytes at `position`, waiting for the download; null at the end of the range. */
  private async readAt(position: number, end: number | undefined): Promise<Uint8Array | null> {
    for (;;) {
      const limit = end ?? this.size;
      if (limit !== undefined && position >= limit) {
        // The end of the whole blob is only reached once it has been verified.
        if (limit === this.size) await this.finishedOrFailed();
        if (this.state === "failed") throw this.error!;
        return null;
      }
      // While running, keep the blob's last byte back (see class comment).
      const available = this.state === "running" && this.size !== undefined ? Math.min(this.written, this.size - 1) : this.written;
      if (position < available) {
        const length = Math.min(READ_CHUNK, available - position, limit === undefined ? Infinity : limit - position);
        const buffer = new Uint8Array(length);
        const { bytesRead } = await (await this.handle()).read(buffer, 0, length, position);
        if (bytesRead === 0) throw new Error("blob temp file shorter than written length");
        return bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
      }
      if (this.state === "failed") throw this.error!;
      if (this.state === "done") return null; // size was unknown and the stream ended
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The temp file while running; once committed (and the first handle closed), the published blob. */
  private async handle(): Promise<FileHandle> {
    this.readHandle ??= open(this.committedPath ?? this.writer!.tempPath, "r");
    return this.readHandle;
  }

  private async finishedOrFailed(): Promise<void> {
    while (this.state === "running") await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private maybeCloseReadHandle(): void {
    if (this.state !== "running" && this.readers === 0 && this.readHandle) {
      const handle = this.readHandle;
      this.readHandle = undefined;
      handle.then((h) => h.close()).catch(() => {});
    }
  }

  private async run(): Promise<void> {
    const { upstream, store, key, repository, log } = this.opts;
    try {
      this.writer = await store.begin(key);
      // Opened now, before any rename, so readers can always reach the bytes.
      await this.handle();
      let failedEndpoint: Endpoint | undefined;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.fetchFrom(failedEndpoint);
          break;
        } catch (error) {
          const resumable = error instanceof UpstreamError && (error.failure.kind !== "status" || error.failure.status >= 500 || error.failure.status === 429);
          if (!resumable || attempt >= MAX_ATTEMPTS || this.size === undefined) throw error;
          // Mid-body trouble counts against the endpoint's health, and the rest is asked
          // of the next tier (the same one again when it is the only one).
          if (this.lastEndpoint) upstream.reportBodyFailure(this.lastEndpoint, (error as Error).message);
          failedEndpoint = upstream.blobEndpoints.length > 1 ? this.lastEndpoint : undefined;
          log.warn({ digest: key.digest, registry: key.registry, at: this.written, attempt, error: (error as Error).message }, "blob download interrupted; resuming");
        }
      }
      this.committedPath = (await this.writer.commit(this.size)).path;
      this.state = "done";
      log.debug({ digest: key.digest, registry: key.registry, repository, bytes: this.written }, "blob cached");
    } catch (error) {
      this.state = "failed";
      this.error = error as Error;
      this.rejectReady(this.error);
      await this.writer?.abort();
      log.warn({ digest: key.digest, registry: key.registry, repository, error: this.error.message }, "blob download failed");
      throw error;
    } finally {
      this.notify();
      this.maybeCloseReadHandle();
    }
  }

  private lastEndpoint: Endpoint | undefined;
  private committedPath: string | undefined;

  /** One upstream GET from the current offset; appends what it receives. */
  private async fetchFrom(skip: Endpoint | undefined): Promise<void> {
    const { upstream, key, repository } = this.opts;
    const abort = new AbortController();
    const resumeAt = this.written;
    const { response, endpoint } = await upstream.request(
      { method: "GET", path: `/v2/${repository}/blobs/${key.digest}`, repository, range: resumeAt > 0 ? `bytes=${resumeAt}-` : undefined, signal: abort.signal },
      "blob",
      skip,
    );
    const stallTimeoutMs = endpoint.config.stallTimeoutMs;
    this.lastEndpoint = endpoint;
    if (response.status !== 200 && response.status !== 206) {
      throw new UpstreamError(endpoint.url, await failureFromResponse(response));
    }
    // An upstream that ignores Range sends the whole blob again: skip what we have.
    let skipBytes = resumeAt;
    if (response.status === 206) {
      const range = parseContentRange(response.headers.get("content-range"));
      if (!range || range.start !== resumeAt) {
        await response.body?.cancel();
        throw new UpstreamError(endpoint.url, { kind: "network", message: "upstream answered a different range" });
      }
      skipBytes = 0;
      if (this.size === undefined && range.size !== undefined) this.size = range.size;
    } else if (this.size === undefined) {
      const length = response.headers.get("content-length");
      this.size = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
    }
    this.resolveReady(this.size);

    const body = response.body;
    if (!body) throw new UpstreamError(endpoint.url, { kind: "network", message: "empty body" });
    const reader = body.getReader();
    let stallTimer: Timer | undefined;
    const armStallTimer = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => abort.abort(), stallTimeoutMs);
    };
    try {
      armStallTimer();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armStallTimer();
        let chunk = value;
        if (skipBytes > 0) {
          const skipped = Math.min(skipBytes, chunk.byteLength);
          skipBytes -= skipped;
          chunk = chunk.subarray(skipped);
          if (chunk.byteLength === 0) continue;
        }
        await this.writer!.write(chunk);
        this.written += chunk.byteLength;
        this.notify();
      }
    } catch (error) {
      if (abort.signal.aborted) throw new UpstreamError(endpoint.url, { kind: "timeout", phase: "body" });
      throw new UpstreamError(endpoint.url, { kind: "network", message: `body interrupted: ${(error as Error).message}` });
    } finally {
      clearTimeout(stallTimer);
    }
    if (this.size !== undefined && this.written < this.size) {
      throw new UpstreamError(endpoint.url, { kind: "network", message: `body ended early at ${this.written} of ${this.size} bytes` });
    }
  }
}
