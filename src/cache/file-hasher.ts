// Hashes a blob file behind a native write (Bun.write of a download's body), on one
// worker thread shared by all downloads (file-hash-worker.ts). The event loop then does
// no per-chunk work for a cold download: it learns how far the file is hashed from a
// message per few MiB and serves readers from the page cache.
import type { HashReport, HashRequest } from "./file-hash-worker.ts";

export interface FileHashJob {
  /** The hex digest of the file's first `size` bytes, once they are all hashed. */
  readonly digest: Promise<string>;
  /** Every byte is written: the file's full length is data, not a preallocation (see the worker). */
  complete(): void;
  cancel(): void;
}

let worker: Worker | undefined;
/** Whether the worker answered its first message: until then (or if it can't start) nothing is piped. */
let ready = false;
let starting: Promise<boolean> | undefined;
let nextId = 0;
const followers = new Map<number, { onProgress: (hashed: number) => void; resolve: (digest: string) => void; reject: (error: Error) => void }>();

/**
 * `bun build --compile` embeds the worker as an extra entry point (package.json's build),
 * placed under the entries' common folder (src/) in the binary's file system, while this
 * module's import.meta.url there is the executable's own.
 */
function workerUrl(): string {
  const compiled = import.meta.url.startsWith("file:///$bunfs/");
  return new URL(compiled ? "./cache/file-hash-worker.ts" : "./file-hash-worker.ts", import.meta.url).href;
}

function hashWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(workerUrl());
  w.onmessage = (event: MessageEvent<HashReport>) => {
    const r = event.data;
    if ("pong" in r) return;
    const f = followers.get(r.id);
    if (!f) return;
    if (r.error !== undefined) {
      followers.delete(r.id);
      f.reject(new Error(`hashing the blob file failed: ${r.error}`));
    } else if (r.digest !== undefined) {
      followers.delete(r.id);
      f.onProgress(r.hashed);
      f.resolve(r.digest);
    } else f.onProgress(r.hashed);
    if (followers.size === 0) w.unref();
  };
  w.onerror = (event) => {
    // The thread died: every file it followed fails (and is downloaded again), none is trusted.
    worker = undefined;
    ready = false;
    const all = [...followers.values()];
    followers.clear();
    for (const f of all) f.reject(new Error(`the hash worker failed: ${event.message}`));
  };
  worker = w;
  return w;
}

/**
 * Starts the worker and waits for its answer (bounded). False when it can't run (a binary
 * built without its entry point, say): downloads then hash on the event loop as before.
 */
export function startFileHasher(timeoutMs = 5_000): Promise<boolean> {
  starting ??= new Promise<boolean>((resolve) => {
    let w: Worker;
    try {
      w = hashWorker();
    } catch {
      return resolve(false);
    }
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      w.removeEventListener("message", onPong);
      w.removeEventListener("error", onError);
      ready = ok;
      if (followers.size === 0) w.unref();
      if (!ok) starting = undefined; // a later start may try again
      resolve(ok);
    };
    const onPong = (event: MessageEvent<HashReport>) => "pong" in event.data && done(true);
    const onError = () => done(false);
    w.addEventListener("message", onPong);
    w.addEventListener("error", onError);
    w.postMessage({ ping: true } satisfies HashRequest);
  });
  return starting;
}

/** Whether followFile() can be used now. */
export function fileHasherReady(): boolean {
  return ready && worker !== undefined;
}

/** Follows `path` as it grows, hashing its first `size` bytes; `onProgress` gets the bytes hashed so far. */
export function followFile(path: string, size: number, algorithm: "sha256" | "sha512", onProgress: (hashed: number) => void): FileHashJob {
  const w = hashWorker();
  const id = ++nextId;
  const digest = new Promise<string>((resolve, reject) => followers.set(id, { onProgress, resolve, reject }));
  digest.catch(() => {}); // observed by verify(); a job cancelled before it is awaited must not crash
  w.ref();
  w.postMessage({ id, path, size, algorithm } satisfies HashRequest);
  return {
    digest,
    complete() {
      if (followers.has(id)) w.postMessage({ id, whole: true } satisfies HashRequest);
    },
    cancel() {
      if (!followers.delete(id)) return;
      w.postMessage({ id, cancel: true } satisfies HashRequest);
      if (followers.size === 0) w.unref();
    },
  };
}
