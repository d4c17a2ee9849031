// The blob file writer's thread (file-writer.ts): writes the chunks of cold downloads to
// their temp files and hashes them as they go. Writing to the page cache is most of a cold
// download's CPU; here it takes the spare core instead of the event loop that serves clients.
import { fullGC } from "bun:jsc";
import { closeSync, openSync, writeSync } from "node:fs";

declare const self: Worker;

/** Progress is reported per this many bytes written, */
const REPORT_BYTES = 1024 * 1024;
/** or this long after the last unreported chunk (a slow body's bytes reach readers soon). */
const REPORT_AFTER_MS = 2;
/** Chunks arrive transferred from the event loop; their memory goes back this often. */
const GC_EVERY_BYTES = 16 * 1024 * 1024;

interface Job {
  fd: number;
  size: number;
  done: number;
  reported: number;
  hasher: Bun.CryptoHasher;
}

export type WriteRequest =
  | { id: number; open: string; size: number; algorithm: "sha256" | "sha512" }
  | { id: number; chunk: Uint8Array; position: number }
  | { id: number; cancel: true }
  | { ping: true };
export type WriteReport = { id: number; done: number; digest?: string; error?: string; code?: string } | { pong: true };

const jobs = new Map<number, Job>();
let sinceGC = 0;
let flushTimer: Timer | undefined;

self.onmessage = (event: MessageEvent<WriteRequest>) => {
  const m = event.data;
  if ("ping" in m) return report({ pong: true });
  if ("cancel" in m) return void end(m.id);
  if ("open" in m) {
    try {
      jobs.set(m.id, { fd: openSync(m.open, "r+"), size: m.size, done: 0, reported: 0, hasher: new Bun.CryptoHasher(m.algorithm) });
    } catch (error) {
      fail(m.id, error);
    }
    return;
  }
  const job = jobs.get(m.id);
  if (!job) return; // cancelled or failed: its chunks are dropped
  try {
    if (m.position !== job.done) throw new Error(`chunk at ${m.position}, file at ${job.done}`);
    const chunk = m.chunk;
    for (let at = 0; at < chunk.byteLength; ) at += writeSync(job.fd, chunk, at, chunk.byteLength - at, job.done + at);
    job.hasher.update(chunk);
    job.done += chunk.byteLength;
  } catch (error) {
    return fail(m.id, error);
  }
  if (job.done >= job.size) {
    report({ id: m.id, done: job.done, digest: job.hasher.digest("hex") });
    end(m.id);
  } else if (job.done - job.reported >= REPORT_BYTES) reportProgress(m.id, job);
  else flushTimer ??= setTimeout(flush, REPORT_AFTER_MS);
  sinceGC += m.chunk.byteLength;
  if (sinceGC >= GC_EVERY_BYTES) {
    sinceGC = 0;
    fullGC();
  }
};

function reportProgress(id: number, job: Job): void {
  job.reported = job.done;
  report({ id, done: job.done });
}

function flush(): void {
  flushTimer = undefined;
  for (const [id, job] of jobs) if (job.done > job.reported) reportProgress(id, job);
}

function fail(id: number, error: unknown): void {
  const e = error as NodeJS.ErrnoException;
  report({ id, done: jobs.get(id)?.done ?? 0, error: e.message, code: e.code });
  end(id);
}

function end(id: number): void {
  const job = jobs.get(id);
  if (!job) return;
  jobs.delete(id);
  try {
    closeSync(job.fd);
  } catch {}
}

function report(r: WriteReport): void {
  self.postMessage(r);
}
