// One download of a blob (from upstream, or from the shared store into the local tier),
// shared by every client that asks for it while it runs (single-flight). Bytes go to a
// temp file as they arrive and are hashed; each client reads the temp file from its own
// offset as the download progresses, so a slow client never slows the download and
// nothing is buffered in memory. If the source breaks mid-body, the download resumes
// from the byte reached (see blob-sources.ts). The blob is published only after digest
// and length are verified; if they are wrong, every client that has not yet received
// the last byte gets a failed stream.
//
// Hot path (see bench/): readers that keep up are handed the upstream's own chunks from
// a small in-memory window (no copy, no file read); only readers that fall behind read
// the temp file, with pread(2) on the event loop (the bytes were just written, so they
// are in the page cache). The last byte is released as soon as the digest is verified;
// fsync and the rename into the cache follow.
import { closeSync, openSync, readSync } from "node:fs";
import { CacheWriteError, type BlobKey, type BlobWriter } from "../cache/blob-store.ts";
import type { Logger } from "../observe/logger.ts";
import { countChunkGarbage, countFanIn, countLiveChunks, settleChunkGarbage } from "../shared/chunk-garbage.ts";
import { UpstreamError } from "../upstream/errors.ts";
import type { BlobSource, OpenedBody } from "./blob-sources.ts";
import { cursorStream, cursorStreamWithFirstBytes, type ReadCursor } from "./read-cursor.ts";

const READ_CHUNK = 64 * 1024;
/** A piped download has no window: its readers read the file in aligned chunks this large, */
const PIPED_READ_CHUNK = 1024 * 1024;
/** and the most recent this many are kept for the other readers (fan-in). */
const PIPED_SHARED_CHUNKS = 8;
/** Buffers of dropped chunks kept for the next reads (one reader needs one; a fan-in, a few). */
const SPARE_READ_BUFFERS = 2;
/** Recent chunks kept in memory for readers that keep up with the download. */
const WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * All downloads' windows together hold at most this: n downloads with readers keep
 * BUDGET/n each (8 concurrent cold pulls held 8 × 8 MiB and peaked at 238 MiB RSS). A
 * reader further behind than its download's share reads the temp file instead.
 */
const WINDOW_BUDGET_BYTES = 16 * 1024 * 1024;
/** Downloads holding a window now. */
const windowed = new Set<BlobDownload>();

function windowShare(): number {
  return Math.min(WINDOW_BYTES, Math.floor(WINDOW_BUDGET_BYTES / Math.max(1, windowed.size)));
}
/** Attempts per download: the first, then resumes from the byte reached. */
export const MAX_DOWNLOAD_ATTEMPTS = 4;

export interface DownloadOptions {
  key: BlobKey;
  source: BlobSource;
  /** Where the bytes go (the local tier, and the shared store when it is being filled); size when known. */
  createWriter: (size: number | undefined) => Promise<BlobWriter>;
  log: Logger;
  /** The global bound on downloads running at once ([cache] max_downloads). */
  slots?: DownloadSlots;
}

/**
 * A bound on downloads running at once, for all clients together: a client that asks
 * for big layers and leaves can't multiply upstream downloads. The rest wait their
 * turn, first come first served.
 */
export class DownloadSlots {
  active = 0;
  private readonly queue: (() => void)[] = [];

  /** Settable: a config reload applies a new bound to the downloads that follow. */
  constructor(public max: number) {}

  get waiting(): number {
    return this.queue.length;
  }

  async acquire(): Promise<() => void> {
    // A reload that lowers max lets the running ones finish: they are not counted twice.
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.queue.push(resolve)); // the releaser hands its slot over
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    };
  }
}

/** "verified": every byte is in and the digest matches; publishing (fsync, rename) is under way. */
type State = "running" | "verified" | "done" | "failed";

/**
 * How a reader's chunks may be used. "owned": the consumer keeps them. "lent": each is valid
 * only until the consumer's next read, so the download reads the next bytes into the same
 * buffer and makes no garbage: for Bun's HTTP response sink, which copies a chunk (to the
 * socket or its own buffer) before it reads again, behind pull-through wrappers that read
 * nothing ahead (test/unit/blob-download.test.ts checks it with slow HTTP clients).
 */
export type ChunkUse = "owned" | "lent";

/** One aligned 1 MiB read of a piped download's file, shared by its readers (fromSharedRead). */
interface SharedRead {
  index: number;
  buffer: Buffer;
  /** The part of `buffer` this chunk of the blob covers. */
  bytes: Uint8Array;
  filled: number;
  /** Readers holding a lent view of it now. */
  lent: number;
  /** A view went out as a reader's own: the buffer is never reused. */
  given: boolean;
  /** No longer kept for readers: its buffer is reused once no view is lent. */
  dropped: boolean;
}

/** A reader's chunk use, and the shared read its last lent chunk came from. */
interface ReaderState {
  use: ChunkUse;
  holds: SharedRead | undefined;
}

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
  private readFd: number | undefined;
  /** The most recent chunks with their offsets, oldest first (at most WINDOW_BYTES). */
  private window: { offset: number; bytes: Uint8Array }[] = [];
  private windowTotal = 0;
  private writer: BlobWriter | undefined;
  /** The body goes to the file writer's thread (see pipeFrom): readers read the file. */
  private piped = false;
  /** Recent aligned reads of a piped download's file, shared by its readers (fromSharedRead). */
  private sharedReads: SharedRead[] = [];
  /** Buffers of dropped shared reads that no reader holds: the next reads fill them. */
  private spareBuffers: Buffer[] = [];

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

  get sourceKind(): BlobSource["kind"] {
    return this.opts.source.kind;
  }

  get source(): BlobSource {
    return this.opts.source;
  }

  get digest(): string {
    return this.opts.key.digest;
  }

  static start(opts: DownloadOptions): BlobDownload {
    return new BlobDownload(opts);
  }

  /**
   * A stream of bytes [start, end) of the blob as the download provides them.
   * The final byte of the blob is held back until the digest is verified.
   */
  reader(start: number, end: number | undefined, use: ChunkUse = "owned"): ReadableStream<Uint8Array> {
    return cursorStream(this.cursor(start, end, use), undefined);
  }

  /** The same stream once its first bytes are there; rejects with the download's error if it fails before (read-cursor.ts). */
  readerWithFirstBytes(start: number, end: number | undefined, use: ChunkUse = "owned"): Promise<ReadableStream<Uint8Array>> {
    return cursorStreamWithFirstBytes(this.cursor(start, end, use));
  }

  /** One reader's place in the download; released at the end of its range, on error or cancel. */
  private cursor(start: number, end: number | undefined, use: ChunkUse): ReadCursor {
    if (++this.readers === 2) countFanIn(1);
    let position = start;
    let released = false;
    const reader: ReaderState = { use, holds: undefined };
    const release = () => {
      if (released) return;
      released = true;
      this.giveBack(reader);
      if (this.readers-- === 2) countFanIn(-1);
      if (this.readers === 0) this.dropWindow();
      this.maybeCloseReadHandle();
    };
    return {
      next: async () => {
        this.giveBack(reader); // asking for more: done with the last lent chunk
        const chunk = await this.readAt(position, end, reader);
        if (chunk === null) release();
        else position += chunk.byteLength;
        return chunk;
      },
      release,
    };
  }

  /** Next bytes at `position`, waiting for the download; null at the end of the range. */
  private async readAt(position: number, end: number | undefined, reader: ReaderState): Promise<Uint8Array | null> {
    for (;;) {
      // A failed download serves nothing more: its temp file is gone once its last reader left.
      this.throwIfFailed();
      const limit = end ?? this.size;
      if (limit !== undefined && position >= limit) {
        // The end of the whole blob is only reached once it has been verified.
        if (limit === this.size) await this.verifiedOrFailed();
        this.throwIfFailed();
        return null;
      }
      // While unverified, keep the blob's last byte back (see class comment).
      const available = this.state === "running" && this.size !== undefined ? Math.min(this.written, this.size - 1) : this.written;
      if (position < available) {
        const wanted = Math.min(available - position, limit === undefined ? Infinity : limit - position);
        // Window views cost nothing, so they go out whole; file reads come in small chunks,
        // which keeps what a slow client's connection holds (and the garbage) small.
        if (this.piped) return this.fromSharedRead(position, wanted, available, reader);
        return this.fromWindow(position, wanted) ?? this.fromFile(position, Math.min(READ_CHUNK, wanted));
      }
      if (this.state !== "running" && this.state !== "verified") return null; // size was unknown and the stream ended
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private throwIfFailed(): void {
    if (this.state === "failed") throw this.error!;
  }

  /** A view of a recent upstream chunk, when `position` is still in the window. */
  private fromWindow(position: number, length: number): Uint8Array | undefined {
    const first = this.window[0];
    if (!first || position < first.offset) return undefined;
    for (const chunk of this.window) {
      const startInChunk = position - chunk.offset;
      if (startInChunk < chunk.bytes.byteLength) return chunk.bytes.subarray(startInChunk, Math.min(chunk.bytes.byteLength, startInChunk + length));
    }
    return undefined;
  }

  /**
   * A piped download's readers read the file in aligned 1 MiB chunks kept for the others:
   * readers at the same place (a fan-in) share one read and one buffer, as the window
   * shares upstream chunks on the chunk path. A chunk is allocated whole and filled as the
   * file grows: each byte is read once, and views already handed out are never written
   * again. Past chunks are kept only while several clients read (a fan-in). A dropped
   * chunk's buffer is filled again once every view of it was lent (ChunkUse) and given back.
   */
  private fromSharedRead(position: number, wanted: number, available: number, reader: ReaderState): Uint8Array {
    const index = Math.floor(position / PIPED_READ_CHUNK);
    const base = index * PIPED_READ_CHUNK;
    let entry = this.sharedReads.find((e) => e.index === index);
    if (!entry) {
      const keep = this.readers > 1 ? PIPED_SHARED_CHUNKS : 1;
      while (this.sharedReads.length >= keep) this.dropSharedRead(this.sharedReads.shift()!);
      const capacity = Math.min(PIPED_READ_CHUNK, this.size! - base);
      const buffer = this.spareBuffers.length > 0 && this.spareBuffers.at(-1)!.byteLength >= capacity ? this.spareBuffers.pop()! : this.newReadBuffer(capacity);
      entry = { index, buffer, bytes: buffer.subarray(0, capacity), filled: 0, lent: 0, given: false, dropped: false };
      this.sharedReads.push(entry);
    }
    if (base + entry.filled <= position) {
      const until = Math.min(base + entry.bytes.byteLength, available);
      entry.filled += this.readInto(entry.bytes.subarray(entry.filled, until - base), base + entry.filled);
    }
    if (reader.use === "lent") {
      reader.holds = entry;
      entry.lent++;
    } else entry.given = true;
    const start = position - base;
    return entry.bytes.subarray(start, Math.min(entry.filled, start + wanted));
  }

  private newReadBuffer(capacity: number): Buffer {
    countChunkGarbage(capacity);
    return Buffer.allocUnsafe(capacity);
  }

  /** The reader is done with its last lent chunk. */
  private giveBack(reader: ReaderState): void {
    const entry = reader.holds;
    if (!entry) return;
    reader.holds = undefined;
    if (--entry.lent === 0 && entry.dropped) this.recycle(entry);
  }

  private dropSharedRead(entry: SharedRead): void {
    entry.dropped = true;
    if (entry.lent === 0) this.recycle(entry);
  }

  private recycle(entry: SharedRead): void {
    if (!entry.given && this.spareBuffers.length < SPARE_READ_BUFFERS) this.spareBuffers.push(entry.buffer);
  }

  private fromFile(position: number, length: number): Uint8Array {
    countChunkGarbage(length);
    const buffer = Buffer.allocUnsafe(length);
    const bytesRead = this.readInto(buffer, position);
    return bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
  }

  /** Reads the file at `position` into `into` (at least one byte: the bytes are known to be there). */
  private readInto(into: Uint8Array, position: number): number {
    this.readFd ??= openSync(this.committedPath ?? this.writer!.tempPath, "r");
    const bytesRead = readSync(this.readFd, into, 0, into.byteLength, position);
    if (bytesRead === 0) throw new Error("blob temp file shorter than written length");
    return bytesRead;
  }

  /** Clients reading the download now. */
  get readerCount(): number {
    return this.readers;
  }

  /** Bytes held in the in-memory window now. */
  get windowBytes(): number {
    return this.windowTotal;
  }

  private remember(offset: number, bytes: Uint8Array): void {
    // While no one reads, a download holds no memory: a reader arriving later reads the file.
    if (this.readers === 0) return;
    if (!windowed.has(this)) {
      windowed.add(this);
      for (const other of windowed) other.trimWindow(); // the others' shares just shrank
    }
    this.window.push({ offset, bytes });
    this.windowTotal += bytes.byteLength;
    countLiveChunks(bytes.byteLength);
    this.trimWindow();
  }

  private trimWindow(): void {
    const share = windowShare();
    while (this.windowTotal > share && this.window.length > 1) {
      const dropped = this.window.shift()!.bytes.byteLength;
      this.windowTotal -= dropped;
      countLiveChunks(-dropped);
    }
  }

  private dropWindow(): void {
    windowed.delete(this);
    countLiveChunks(-this.windowTotal);
    this.window = [];
    this.windowTotal = 0;
    this.sharedReads = [];
    this.spareBuffers = [];
  }

  private async verifiedOrFailed(): Promise<void> {
    while (this.state === "running") await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private maybeCloseReadHandle(): void {
    if (this.readers > 0 || this.state === "running" || this.state === "verified") return;
    this.dropWindow();
    if (this.readFd !== undefined) {
      const fd = this.readFd;
      this.readFd = undefined;
      try {
        closeSync(fd);
      } catch {}
    }
  }

  private async run(): Promise<void> {
    const { key, source, log } = this.opts;
    const releaseSlot = await this.opts.slots?.acquire();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.fetchFrom(source);
          break;
        } catch (error) {
          // Broken after its last byte: nothing to resume (bytes=size- is a 416); verify what is in.
          if (error instanceof UpstreamError && this.size !== undefined && this.written >= this.size) break;
          if (!worthResuming(error, source, this.size, attempt)) throw error;
          log.warn({ digest: key.digest, registry: key.registry, from: source.kind, at: this.written, attempt, error: (error as Error).message }, "blob download interrupted; resuming");
        }
      }
      const writer = this.writer!; // created by the first body that opened
      await writer.verify(this.size);
      this.state = "verified";
      this.notify(); // readers may send their last byte now
      this.committedPath = (await writer.commit(this.size)).path;
      this.state = "done";
      log.debug({ digest: key.digest, registry: key.registry, from: source.kind, bytes: this.written }, "blob cached");
    } catch (error) {
      this.state = "failed";
      this.error = error as Error;
      this.rejectReady(this.error);
      await this.writer?.abort();
      log.warn({ digest: key.digest, registry: key.registry, from: source.kind, error: this.error.message }, "blob download failed");
      throw error;
    } finally {
      releaseSlot?.();
      this.notify();
      this.maybeCloseReadHandle();
      settleChunkGarbage();
    }
  }

  private committedPath: string | undefined;
  /** The source's answer the local tier refused before its first byte (a full disk), until one request takes it. */
  private refused: RefusedBody | undefined;

  /** The source's answer to this download when the local tier refused it (a CacheWriteError), once. */
  takeRefusedBody(): RefusedBody | undefined {
    const refused = this.refused;
    this.refused = undefined;
    return refused;
  }

  /** One request from the current offset; appends what it receives. */
  private async fetchFrom(source: BlobSource): Promise<void> {
    const abort = new AbortController();
    const opened = await source.open(this.written, abort.signal);
    if (this.size === undefined) this.size = opened.size;
    if (!this.writer) {
      // Created once the size is known, so a store without room refuses before any byte.
      try {
        this.writer = await this.opts.createWriter(this.size);
        // Opened now, before any rename, so readers can always reach the bytes.
        this.readFd = openSync(this.writer.tempPath, "r");
      } catch (error) {
        if (error instanceof CacheWriteError) {
          // The requests waiting on this download stream the blob uncached: one of them takes
          // this answer instead of asking the source again. Once they had their turn, it goes.
          this.refused = { opened, abort };
          setTimeout(() => this.takeRefusedBody()?.opened.body.cancel().catch(() => {}), 0);
        } else opened.body.cancel().catch(() => {});
        throw error;
      }
    }
    if (this.size !== undefined) this.writer!.expectSize?.(this.size);
    this.resolveReady(this.size);
    let stallTimer: Timer | undefined;
    const armStallTimer = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => abort.abort(), opened.stallTimeoutMs);
    };
    // A resume of a piped download pipes on, paced or not: the worker's hasher has every byte so far.
    if (this.piped || (this.written === 0 && this.size !== undefined && this.writer!.pipe && !opened.paced)) return this.pipeFrom(source, opened, abort, armStallTimer, () => clearTimeout(stallTimer));
    const reader = opened.body.getReader();
    try {
      armStallTimer();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armStallTimer();
        await this.writer!.write(value);
        this.remember(this.written, value);
        this.written += value.byteLength;
        countChunkGarbage(value.byteLength);
        this.notify();
      }
    } catch (error) {
      reader.cancel().catch(() => {});
      if (error instanceof CacheWriteError) throw error; // ours, not the source's: no resume, no cooldown
      throw bodyBroke(source, abort.signal, error);
    } finally {
      clearTimeout(stallTimer);
    }
    if (this.size !== undefined && this.written < this.size) {
      throw new UpstreamError(source.kind, { kind: "network", message: `body ended early at ${this.written} of ${this.size} bytes` });
    }
  }

  /**
   * The body handed chunk by chunk, uncopied, to the file writer's thread, which writes and
   * hashes it. Readers follow what is written (so in the file), read in large chunks;
   * silence (no bytes written) for the stall timeout aborts the body.
   */
  private async pipeFrom(source: BlobSource, opened: OpenedBody, abort: AbortController, armStallTimer: () => void, clearStallTimer: () => void): Promise<void> {
    this.piped = true;
    armStallTimer();
    try {
      await this.writer!.pipe!(opened.body, (hashed) => {
        armStallTimer();
        if (hashed <= this.written) return;
        this.written = hashed;
        this.notify();
      });
    } catch (error) {
      if (error instanceof CacheWriteError) throw error; // ours, not the source's: no resume, no cooldown
      throw bodyBroke(source, abort.signal, error);
    } finally {
      clearStallTimer();
      // What is in the file counts: a resume goes on from there.
      this.written = Math.max(this.written, this.writer!.bytesWritten);
      this.notify();
    }
    if (this.written < this.size!) throw new UpstreamError(source.kind, { kind: "network", message: `body ended early at ${this.written} of ${this.size} bytes` });
  }
}

/** An opened body nobody read from, with what aborts it. */
export interface RefusedBody {
  opened: OpenedBody;
  abort: AbortController;
}

/**
 * Whether attempt `attempt` failing with `error` is worth another from the byte reached:
 * network trouble, timeouts and 5xx/429 are, a 404 or 401 is not, nor a blob of unknown size.
 * A body that broke is its tier's failure (the last attempt's too), so the source hears of it first.
 */
export function worthResuming(error: unknown, source: BlobSource, size: number | undefined, attempt: number): boolean {
  if (!(error instanceof UpstreamError)) return false;
  const f = error.failure;
  const retryable = f.kind !== "status" || f.status >= 500 || f.status === 429;
  return retryable && source.bodyFailed(error) && size !== undefined && attempt < MAX_DOWNLOAD_ATTEMPTS;
}

/** What a body that failed mid-read is: silence (the stall timer aborted it) or a network break. */
export function bodyBroke(source: BlobSource, stallAbort: AbortSignal, error: unknown): UpstreamError {
  if (stallAbort.aborted) return new UpstreamError(source.kind, { kind: "timeout", phase: "body" });
  return new UpstreamError(source.kind, { kind: "network", message: `body interrupted: ${(error as Error).message}` });
}
