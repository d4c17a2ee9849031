// Blobs on local disk, content-addressed: <dir>/blobs/<registry>/<alg>/<hex[0:2]>/<hex>.
// Downloads go to <dir>/tmp and are renamed into place after verification; the
// rename is atomic, so a crash leaves only temp files, which start-up removes (only those
// of dead processes: their names carry the pid, and two ferries may share a cache dir).
import { fullGC } from "bun:jsc";
import { closeSync, fdatasync, openSync, writeSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat, statfs, utimes, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { join } from "node:path";
import { parseDigest } from "../protocol/digest.ts";
import { BlobIntegrityError, CacheWriteError, type BlobInfo, type BlobKey, type BlobStore, type BlobWriter } from "./blob-store.ts";
import { fileWriterReady, FileWriteError, startFileWriter, writeOnWorker, type FileWriteJob } from "./file-writer.ts";
import { LruIndex } from "./lru-index.ts";

/** Eviction brings the tier down to this share of max_size, so it doesn't run on every commit. */
const EVICTION_LOW_WATER = 0.9;
/** A start-up index of this many files is collected once it is complete. */
const INDEX_GC_FILES = 10_000;
/** Free space a new blob must leave on the disk (the metadata database lives there too). */
const HEADROOM_BYTES = 1024 * 1024;

export interface FsBlobStoreOptions {
  /** Upper bound for the blobs on disk; least recently used ones are evicted past it. */
  maxSize?: number;
  onEvict?: (result: { files: number; bytes: number; remaining: number }) => void;
  /** The disk became full (with why), or has room again (undefined). */
  onDiskFull?: (why: string | undefined) => void;
  /** Downloads of known size piped natively and hashed on the hash worker (default true). */
  hashOnWorker?: boolean;
  /** The hash worker could not start: downloads hash on the event loop. */
  onNoHashWorker?: () => void;
  /** The start-up index of the tier is complete. */
  onIndexed?: (result: { files: number; bytes: number; ms: number }) => void;
  /** Awaited between batches of the start-up index (default: the next event-loop turn; tests hold it). */
  indexPause?: (phase: "walk" | "merge") => Promise<void>;
}

export class FsBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private tempCounter = 0;
  readonly usage: LruIndex;
  /** Resolves once the start-up index is complete and an over-full tier trimmed. */
  indexed: Promise<void> = Promise.resolve();
  private evicting: Promise<void> | undefined;
  /** An eviction asked for while the index loads: it runs once the index is complete. */
  private evictionAfterIndex: Promise<void> | undefined;
  private full: string | undefined;
  /** Expected bytes of the downloads being written now: max_size counts them too. */
  private reserved = 0;

  constructor(
    dir: string,
    private readonly options: FsBlobStoreOptions = {},
  ) {
    this.blobsDir = join(dir, "blobs");
    this.tmpDir = join(dir, "tmp");
    this.usage = new LruIndex(options.indexPause);
  }

  /**
   * Creates the folders, removes temp files left by a crash, and starts indexing what is
   * cached. Serving needs no index (a blob is found by its file), so start-up does not wait
   * for it; max_size eviction does (see `indexed`).
   */
  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    await this.removeDeadTempFiles();
    await mkdir(this.blobsDir, { recursive: true });
    const t0 = performance.now();
    this.indexed = this.usage
      .load(this.blobsDir)
      .then(() => {
        this.options.onIndexed?.({ files: this.usage.count, bytes: this.usage.size, ms: Math.round(performance.now() - t0) });
        // The walk's garbage (a record per file) would sit under the first downloads' chunk garbage.
        if (this.usage.count >= INDEX_GC_FILES) fullGC();
        return this.enforceMaxSize();
      })
      .catch(() => {}); // an eviction that failed is tried again on the next commit
    // In the background: until the worker answers, downloads hash on the event loop.
    if (this.options.hashOnWorker !== false) void startFileWriter().then((ok) => ok || this.options.onNoHashWorker?.());
  }

  /** Temp files (`<hex>.<pid>.<n>`, `.ready-<pid>`) whose process is gone, or of no known process. */
  private async removeDeadTempFiles(): Promise<void> {
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const pid = Number((/\.(\d+)\.\d+$/.exec(name) ?? /^\.ready-(\d+)$/.exec(name))?.[1]);
      if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
      await rm(join(this.tmpDir, name), { recursive: true, force: true });
    }
  }

  /** Blobs another process (ferry prune) deleted stop counting. */
  async rescan(): Promise<void> {
    await this.usage.whenComplete();
    await this.usage.forgetMissing();
  }

  /**
   * Evicts least-recently-used blobs when the tier (with downloads under way) is over max_size
   * (one run at a time). Not on a partial index: its oldest entries would be the newest blobs.
   */
  enforceMaxSize(): Promise<void> {
    const max = this.options.maxSize;
    if (max !== undefined && !this.usage.complete) {
      return (this.evictionAfterIndex ??= this.usage.whenComplete().then(() => {
        this.evictionAfterIndex = undefined;
        return this.enforceMaxSize();
      }));
    }
    if (this.evicting) return this.evicting; // the index shrinks before the files are gone
    if (max === undefined || this.usage.size + this.reserved <= max) return Promise.resolve();
    this.evicting ??= (async () => {
      await this.rescan(); // what is counted may already be gone
      const target = Math.max(0, Math.floor(max * EVICTION_LOW_WATER) - this.reserved);
      if (this.usage.size <= target) return;
      const r = await this.usage.evictTo(target);
      this.options.onEvict?.({ ...r, remaining: this.usage.size });
    })().finally(() => (this.evicting = undefined));
    return this.evicting;
  }

  /** Whether downloads of known size are written and hashed on the writer threads now. */
  get hashesOnWorker(): boolean {
    return this.options.hashOnWorker !== false && fileWriterReady();
  }

  /** Why the disk counts as full (the last ENOSPC, or too little free space), if it does. */
  get diskFull(): string | undefined {
    return this.full;
  }

  /** Writes and removes a probe file: a full disk or a read-only mount fails here. */
  async checkWritable(): Promise<{ ok: boolean; error?: string }> {
    const probe = join(this.tmpDir, `.ready-${process.pid}`);
    try {
      await mkdir(this.tmpDir, { recursive: true });
      await writeFile(probe, "ok");
      await rm(probe, { force: true });
    } catch (error) {
      await rm(probe, { force: true }).catch(() => {});
      const failure = CacheWriteError.from(error, "readiness probe");
      this.noteWriteError(failure);
      return { ok: false, error: failure.message };
    }
    const free = await this.freeBytes();
    if (free !== undefined && free < HEADROOM_BYTES) {
      this.setFull(`cache disk full: ${free} bytes free in ${this.tmpDir}`);
      return { ok: false, error: this.full };
    }
    this.setFull(undefined);
    return { ok: true };
  }

  /** Called with every failed write, so a full disk shows on /readyz and the dashboard. */
  private noteWriteError(error: CacheWriteError): void {
    if (error.diskFull) this.setFull(error.message);
  }

  private setFull(why: string | undefined): void {
    if (why === this.full) return;
    const changed = (why === undefined) !== (this.full === undefined);
    this.full = why;
    if (changed) this.options.onDiskFull?.(why);
  }

  private async freeBytes(): Promise<number | undefined> {
    try {
      const s = await statfs(this.tmpDir);
      return s.bavail * s.bsize;
    } catch {
      return undefined;
    }
  }

  /** Refuses a blob that would not fit in what is free (a full disk fails here, before any byte). */
  private async ensureRoom(size: number): Promise<void> {
    const free = await this.freeBytes();
    if (free === undefined) return;
    if (free < HEADROOM_BYTES) this.setFull(`cache disk full: ${free} bytes free in ${this.tmpDir}`);
    else if (this.full) this.setFull(undefined);
    if (free < size + HEADROOM_BYTES) throw new CacheWriteError("ENOSPC", `no room in the cache for a blob of ${size} bytes (${free} bytes free)`);
  }

  pathOf(key: BlobKey): string {
    const digest = parseDigest(key.digest);
    // Callers validate earlier; this guard keeps a bad key from ever becoming a path.
    if (!digest || !/^[a-z0-9.:-]+$/.test(key.registry) || key.registry.includes("..")) {
      throw new Error(`invalid blob key ${key.registry} ${key.digest}`);
    }
    return join(this.blobsDir, key.registry.replace(":", "_"), digest.algorithm, digest.hex.slice(0, 2), digest.hex);
  }

  async stat(key: BlobKey): Promise<BlobInfo | undefined> {
    const path = this.pathOf(key);
    try {
      const s = await stat(path);
      return { size: s.size, path };
    } catch {
      this.usage.remove(path); // deleted behind our back (ferry prune): stop counting it
      return undefined;
    }
  }

  touch(key: BlobKey): void {
    const path = this.pathOf(key);
    this.usage.touch(path);
    // mtime records last use across restarts (the index is rebuilt from it).
    const now = new Date();
    utimes(path, now, now).catch(() => {});
  }

  async begin(key: BlobKey, expectedSize?: number): Promise<BlobWriter> {
    const digest = parseDigest(key.digest);
    if (!digest) throw new Error(`invalid digest ${key.digest}`);
    if (expectedSize !== undefined) await this.ensureRoom(expectedSize);
    const finalPath = this.pathOf(key);
    const tempPath = join(this.tmpDir, `${digest.hex.slice(0, 16)}.${process.pid}.${++this.tempCounter}`);
    let fd: number;
    try {
      fd = openSync(tempPath, "w+");
    } catch (error) {
      const failure = CacheWriteError.from(error, "create temp file");
      this.noteWriteError(failure);
      throw failure;
    }
    const reservation = expectedSize ?? 0;
    this.reserved += reservation;
    void this.enforceMaxSize();
    return new FsBlobWriter(fd, tempPath, finalPath, digest.text, digest.algorithm as "sha256" | "sha512", this.hashesOnWorker, {
      committed: (info) => {
        this.usage.add(info.path, info.size);
        void this.enforceMaxSize();
      },
      closed: () => (this.reserved -= reservation),
      failed: (error) => this.noteWriteError(error),
    });
  }
}

const datasync = promisify(fdatasync);

/**
 * write() puts a chunk in the page cache with write(2) on the event loop (the S3 tee,
 * bodies of unknown length or paced, no writer thread). A body given to pipe() goes to a
 * writer thread instead, written and hashed there (file-writer.ts); a resume pipes on into
 * the same job, so one hasher sees every byte.
 */
class FsBlobWriter implements BlobWriter {
  bytesWritten = 0;
  private state: "writing" | "verified" | "closed" = "writing";
  private readonly hasher: Bun.CryptoHasher;
  private expectedSize: number | undefined;
  /** Set once pipe() ran: the file is written and hashed on the worker, not here. */
  private job: FileWriteJob | undefined;

  constructor(
    private readonly fd: number,
    readonly tempPath: string,
    private readonly finalPath: string,
    private readonly expectedDigest: string,
    private readonly algorithm: "sha256" | "sha512",
    pipeable: boolean,
    private readonly on: { committed: (info: BlobInfo) => void; closed: () => void; failed: (error: CacheWriteError) => void },
  ) {
    this.hasher = new Bun.CryptoHasher(algorithm);
    if (!pipeable) this.pipe = undefined;
  }

  expectSize(size: number): void {
    this.expectedSize ??= size;
  }

  pipe?: (body: ReadableStream<Uint8Array>, onProgress: (bytes: number) => void) => Promise<void> = async (body, onProgress) => {
    const size = this.expectedSize;
    if (size === undefined || (this.bytesWritten !== 0 && !this.job)) throw new Error("pipe() only takes a blob of known size, from its start or on from an earlier pipe()");
    const job = (this.job ??= writeOnWorker(this.tempPath, size, this.algorithm, onProgress));
    let handedOver = this.bytesWritten;
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (handedOver + value.byteLength > size) throw new Error(`body longer than the blob's ${size} bytes`);
        handedOver += value.byteLength;
        await job.write(value);
      }
      await job.drained();
    } catch (error) {
      reader.cancel().catch(() => {});
      // What was handed over goes into the file first: a resume goes on from there.
      const local = error instanceof FileWriteError ? error : await job.drained().then(() => undefined, (e: unknown) => e);
      if (local instanceof FileWriteError) throw this.failed(local, "write");
      throw error; // the body's: the caller resumes from what is in place
    } finally {
      this.bytesWritten = job.done;
    }
  };

  async write(chunk: Uint8Array): Promise<void> {
    this.hasher.update(chunk);
    let offset = 0;
    try {
      while (offset < chunk.byteLength) offset += writeSync(this.fd, chunk, offset, chunk.byteLength - offset, this.bytesWritten + offset);
    } catch (error) {
      throw this.failed(error, "write");
    }
    this.bytesWritten += chunk.byteLength;
  }

  private failed(error: unknown, doing: string): CacheWriteError {
    const failure = CacheWriteError.from(error, doing);
    this.on.failed(failure);
    return failure;
  }

  async verify(expectedSize?: number): Promise<void> {
    if (this.state !== "writing") return;
    const lengthWrong = expectedSize !== undefined && expectedSize !== this.bytesWritten;
    if (lengthWrong) this.job?.cancel(); // the worker would wait for bytes that never come
    const hex = this.job && !lengthWrong ? await this.job.digest.catch(async (error: Error) => {
      await this.discard();
      throw new CacheWriteError(undefined, error.message);
    }) : this.hasher.digest("hex");
    const actual = `${this.algorithm}:${hex}`;
    if (actual !== this.expectedDigest || lengthWrong) {
      await this.discard();
      throw new BlobIntegrityError(this.expectedDigest, actual, expectedSize, this.bytesWritten);
    }
    this.state = "verified";
  }

  async commit(expectedSize?: number): Promise<BlobInfo> {
    await this.verify(expectedSize);
    if (this.state !== "verified") throw new Error("blob writer already closed");
    this.state = "closed";
    this.on.closed();
    try {
      // Durable before visible: after a crash a published blob is whole.
      try {
        await datasync(this.fd);
      } finally {
        closeSync(this.fd);
      }
      await mkdir(join(this.finalPath, ".."), { recursive: true });
      await rename(this.tempPath, this.finalPath);
    } catch (error) {
      await rm(this.tempPath, { force: true }).catch(() => {});
      throw this.failed(error, "publish");
    }
    const info = { size: this.bytesWritten, path: this.finalPath };
    this.on.committed(info);
    return info;
  }

  async abort(): Promise<void> {
    if (this.state === "closed") return;
    await this.discard();
  }

  private async discard(): Promise<void> {
    this.job?.cancel();
    if (this.state !== "closed") {
      this.state = "closed";
      this.on.closed();
      try {
        closeSync(this.fd);
      } catch {}
    }
    await rm(this.tempPath, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}
