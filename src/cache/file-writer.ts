// Writes cold downloads' temp files on writer threads shared by all downloads
// (file-write-worker.ts), hashing each chunk there as it is written. The event loop hands
// each upstream chunk over without copying it (a transfer) and learns how far the file is
// written and hashed from a message per MiB; it then serves readers from the page cache.
import type { WriteReport, WriteRequest } from "./file-write-worker.ts";

export interface FileWriteJob {
  /** Hands `chunk` to the writer (the caller's view is detached); resolves when the job has room for more. */
  write(chunk: Uint8Array): Promise<void>;
  /** Resolves once every chunk handed over is in the file; rejects if writing failed. */
  drained(): Promise<void>;
  /** Bytes in the file and hashed. */
  readonly done: number;
  /** The hex digest of the file's `size` bytes, once they are all written. */
  readonly digest: Promise<string>;
  cancel(): void;
}

/**
 * Bytes handed over and not yet written, per job: a slow disk holds back the download, not
 * memory. All jobs together hold at most the budget (8 concurrent cold pulls at 8 MiB each
 * went over 200 MiB RSS), one job at most its cap: at 2 MiB a single cold pull waited on the
 * writer (300 MiB in 1.06 s, against 0.91 s at 8 MiB).
 */
const IN_FLIGHT_CAP_BYTES = 8 * 1024 * 1024;
const IN_FLIGHT_BUDGET_BYTES = 16 * 1024 * 1024;
function inFlightShare(): number {
  const activeJobs = threads.reduce((n, t) => n + t.jobs.size, 0);
  return Math.max(1024 * 1024, Math.min(IN_FLIGHT_CAP_BYTES, Math.floor(IN_FLIGHT_BUDGET_BYTES / Math.max(1, activeJobs))));
}
/**
 * Writer threads: page-cache writes cost as much CPU as the rest of a cold download
 * together, so concurrent downloads spread over the cores (one writer per core, at most 4).
 */
const THREADS = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));

type JobHandler = (r: Extract<WriteReport, { id: number }>) => void;
interface WriterThread {
  worker: Worker;
  jobs: Map<number, JobHandler>;
}

/** The threads that answered their first message; until then (or if none can start) nothing goes to them. */
let threads: WriterThread[] = [];
let starting: Promise<boolean> | undefined;
let nextId = 0;

/**
 * `bun build --compile` embeds the worker as an extra entry point (package.json's build),
 * placed under the entries' common folder (src/) in the binary's file system, while this
 * module's import.meta.url there is the executable's own.
 */
function workerUrl(): string {
  const compiled = import.meta.url.startsWith("file:///$bunfs/");
  return new URL(compiled ? "./cache/file-write-worker.ts" : "./file-write-worker.ts", import.meta.url).href;
}

/** Starts one writer thread; resolves with it once it answered, or undefined (bounded). */
function startThread(timeoutMs: number): Promise<WriterThread | undefined> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(workerUrl());
    } catch {
      return resolve(undefined);
    }
    const thread: WriterThread = { worker, jobs: new Map() };
    const timer = setTimeout(() => {
      worker.terminate();
      resolve(undefined);
    }, timeoutMs);
    worker.onmessage = (event: MessageEvent<WriteReport>) => {
      const r = event.data;
      if ("pong" in r) {
        clearTimeout(timer);
        worker.unref();
        return resolve(thread);
      }
      thread.jobs.get(r.id)?.(r);
    };
    worker.onerror = (event) => {
      clearTimeout(timer);
      resolve(undefined);
      // The thread died: every file it wrote fails (and is downloaded again), none is trusted.
      threads = threads.filter((t) => t !== thread);
      for (const [id, on] of [...thread.jobs]) on({ id, done: 0, error: `the file writer failed: ${event.message}` });
    };
    worker.postMessage({ ping: true } satisfies WriteRequest);
  });
}

/**
 * Starts the writer threads and waits for their answer (bounded). False when none can
 * run (a binary built without the worker's entry point, say): downloads then write and
 * hash on the event loop.
 */
export function startFileWriter(timeoutMs = 5_000): Promise<boolean> {
  starting ??= Promise.all(Array.from({ length: THREADS }, () => startThread(timeoutMs))).then((started) => {
    threads = started.filter((t): t is WriterThread => t !== undefined);
    if (threads.length === 0) starting = undefined; // a later start may try again
    return threads.length > 0;
  });
  return starting;
}

/** Whether writeOnWorker() can be used now. */
export function fileWriterReady(): boolean {
  return threads.length > 0;
}

/** An error of the worker's write, with the errno code (ENOSPC…) the disk gave. */
export class FileWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** Writes `path` (already created, empty) from offset 0 with the chunks handed to the job, hashing its first `size` bytes; `onProgress` gets the bytes written so far. */
export function writeOnWorker(path: string, size: number, algorithm: "sha256" | "sha512", onProgress: (done: number) => void): FileWriteJob {
  // The least busy thread; a download's chunks all go to the same one, in order.
  const thread = threads.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
  const w = thread.worker;
  const id = ++nextId;
  let queued = 0;
  let done = 0;
  let failure: Error | undefined;
  let wakeups: (() => void)[] = [];
  let resolveDigest!: (hex: string) => void;
  let rejectDigest!: (error: Error) => void;
  const digest = new Promise<string>((resolve, reject) => {
    resolveDigest = resolve;
    rejectDigest = reject;
  });
  digest.catch(() => {}); // observed by verify(); a job cancelled before it is awaited must not crash
  const wake = () => {
    const all = wakeups;
    wakeups = [];
    for (const f of all) f();
  };
  const finish = () => {
    if (!thread.jobs.delete(id)) return;
    if (thread.jobs.size === 0) w.unref();
  };
  thread.jobs.set(id, (r) => {
    if (r.error !== undefined) {
      failure = new FileWriteError(`writing the blob file failed: ${r.error}`, r.code);
      finish();
      rejectDigest(failure);
    } else {
      done = r.done;
      onProgress(done);
      if (r.digest !== undefined) {
        finish();
        resolveDigest(r.digest);
      }
    }
    wake();
  });
  /** Waits until `until()` holds or the job failed. */
  const waitFor = async (until: () => boolean) => {
    while (!failure && !until()) await new Promise<void>((resolve) => wakeups.push(resolve));
    if (failure) throw failure;
  };
  w.ref();
  w.postMessage({ id, open: path, size, algorithm } satisfies WriteRequest);
  return {
    get done() {
      return done;
    },
    digest,
    async write(chunk) {
      if (failure) throw failure;
      const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
      // A copy of anything else (a Buffer's slice() would be a view: its memory would be detached).
      const sent = owned ? chunk : new Uint8Array(chunk);
      const position = queued;
      queued += sent.byteLength; // before the transfer detaches it
      w.postMessage({ id, chunk: sent, position } satisfies WriteRequest, [sent.buffer as ArrayBuffer]);
      await waitFor(() => queued - done <= inFlightShare());
    },
    drained: () => waitFor(() => done >= queued),
    cancel() {
      if (!thread.jobs.has(id)) return;
      finish();
      failure ??= new Error("cancelled");
      wake();
      w.postMessage({ id, cancel: true } satisfies WriteRequest);
    },
  };
}
