// Writes cold downloads' temp files on one worker thread shared by all downloads
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

/** Bytes handed over and not yet written, per job: a slow disk holds back the download, not memory. */
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;

let worker: Worker | undefined;
/** Whether the worker answered its first message: until then (or if it can't start) nothing goes to it. */
let ready = false;
let starting: Promise<boolean> | undefined;
let nextId = 0;
const jobs = new Map<number, (r: Extract<WriteReport, { id: number }>) => void>();

/**
 * `bun build --compile` embeds the worker as an extra entry point (package.json's build),
 * placed under the entries' common folder (src/) in the binary's file system, while this
 * module's import.meta.url there is the executable's own.
 */
function workerUrl(): string {
  const compiled = import.meta.url.startsWith("file:///$bunfs/");
  return new URL(compiled ? "./cache/file-write-worker.ts" : "./file-write-worker.ts", import.meta.url).href;
}

function writeWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(workerUrl());
  w.onmessage = (event: MessageEvent<WriteReport>) => {
    const r = event.data;
    if ("pong" in r) return;
    jobs.get(r.id)?.(r);
  };
  w.onerror = (event) => {
    // The thread died: every file it wrote fails (and is downloaded again), none is trusted.
    worker = undefined;
    ready = false;
    for (const [id, on] of [...jobs]) on({ id, done: 0, error: `the file writer failed: ${event.message}` });
  };
  worker = w;
  return w;
}

/**
 * Starts the worker and waits for its answer (bounded). False when it can't run (a binary
 * built without its entry point, say): downloads then write and hash on the event loop.
 */
export function startFileWriter(timeoutMs = 5_000): Promise<boolean> {
  starting ??= new Promise<boolean>((resolve) => {
    let w: Worker;
    try {
      w = writeWorker();
    } catch {
      return resolve(false);
    }
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      w.removeEventListener("message", onPong);
      w.removeEventListener("error", onError);
      ready = ok;
      if (jobs.size === 0) w.unref();
      if (!ok) starting = undefined; // a later start may try again
      resolve(ok);
    };
    const onPong = (event: MessageEvent<WriteReport>) => "pong" in event.data && done(true);
    const onError = () => done(false);
    w.addEventListener("message", onPong);
    w.addEventListener("error", onError);
    w.postMessage({ ping: true } satisfies WriteRequest);
  });
  return starting;
}

/** Whether writeOnWorker() can be used now. */
export function fileWriterReady(): boolean {
  return ready && worker !== undefined;
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
  const w = writeWorker();
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
    if (!jobs.delete(id)) return;
    if (jobs.size === 0) w.unref();
  };
  jobs.set(id, (r) => {
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
      const sent = owned ? chunk : chunk.slice();
      const position = queued;
      queued += sent.byteLength; // before the transfer detaches it
      w.postMessage({ id, chunk: sent, position } satisfies WriteRequest, [sent.buffer as ArrayBuffer]);
      await waitFor(() => queued - done <= IN_FLIGHT_BYTES);
    },
    drained: () => waitFor(() => done >= queued),
    cancel() {
      if (!jobs.has(id)) return;
      finish();
      failure ??= new Error("cancelled");
      wake();
      w.postMessage({ id, cancel: true } satisfies WriteRequest);
    },
  };
}
