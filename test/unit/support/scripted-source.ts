// A BlobSource whose bodies a test feeds chunk by chunk (the interface an upstream or the
// shared store sits behind), for BlobDownload and what serves its readers; and how the tests
// start a download.
import type { FsBlobStore } from "../../../src/cache/fs-blob-store.ts";
import { createLogger } from "../../../src/observe/logger.ts";
import { BlobDownload, type DownloadSlots } from "../../../src/registry/blob-download.ts";
import type { BlobSource, OpenedBody } from "../../../src/registry/blob-sources.ts";

/** A download of docker.io's `digest` from `source` into `store`, logging nothing. */
export function startDownload(store: FsBlobStore, digest: string, source: BlobSource, slots?: DownloadSlots): BlobDownload {
  const key = { registry: "docker.io", digest };
  return BlobDownload.start({ key, source, createWriter: (size) => store.begin(key, size), log: createLogger("silent"), slots });
}

/**
 * A source whose bodies the test feeds chunk by chunk. Each open() is recorded with its
 * offset; `fail` breaks the current body as a network reset would.
 */
export class ScriptedSource implements BlobSource {
  readonly kind = "upstream" as const;
  readonly opens: number[] = [];
  bodyFailures = 0;
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  private opened: (() => void)[] = [];

  constructor(
    private readonly size: number | undefined,
    private readonly stallTimeoutMs = 10_000,
    private readonly paced = false,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    this.opens.push(offset);
    // Like a fetch body: aborting the request errors the body.
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.controller = c;
        signal.addEventListener("abort", () => c.error(new DOMException("The operation was aborted.", "AbortError")), { once: true });
      },
    });
    for (const wake of this.opened.splice(0)) wake();
    return { size: this.size, body, stallTimeoutMs: this.stallTimeoutMs, paced: this.paced };
  }

  bodyFailed(): boolean {
    this.bodyFailures++;
    return true;
  }

  /** Resolves once the download has opened `n` bodies. */
  async openedTimes(n: number): Promise<void> {
    while (this.opens.length < n) await new Promise<void>((r) => this.opened.push(r));
  }

  push(chunk: Uint8Array): void {
    // A fresh buffer per chunk, as a fetch body gives (a piped download hands it to another thread).
    this.controller!.enqueue(new Uint8Array(chunk));
  }
  end(): void {
    this.controller!.close();
  }
  fail(): void {
    this.controller!.error(new Error("connection reset"));
  }
}
