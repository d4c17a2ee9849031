// The file hasher's thread (file-hasher.ts): hashes blob files that are being written
// elsewhere (natively, by Bun.write), from the page cache, right behind the write, and
// reports how far it got. It runs beside the event loop, so a cold download's hashing
// takes the spare core instead of the loop that serves clients.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

declare const self: Worker;

/** Bytes hashed per read: large, so a 300 MiB blob is a few dozen reads and messages. */
const READ_BYTES = 4 * 1024 * 1024;
/** A file that stops growing for this long is given up (the main thread cancels sooner). */
const GIVE_UP_MS = 15 * 60_000;

interface Job {
  fd: number;
  size: number;
  hashed: number;
  hasher: Bun.CryptoHasher;
  lastGrowth: number;
  /** The writer said the file is whole (complete()): its full length can be trusted now. */
  whole: boolean;
}

export type HashRequest = { id: number; path: string; size: number; algorithm: "sha256" | "sha512" } | { id: number; cancel: true } | { id: number; whole: true } | { ping: true };
export type HashReport = { id: number; hashed: number; digest?: string; error?: string } | { pong: true };

const jobs = new Map<number, Job>();
const buffer = new Uint8Array(READ_BYTES);
let pumping = false;

self.onmessage = (event: MessageEvent<HashRequest>) => {
  const m = event.data;
  if ("ping" in m) return report({ pong: true });
  if ("cancel" in m) return void end(m.id);
  if ("whole" in m) {
    const job = jobs.get(m.id);
    if (job) job.whole = true; // its pump is running: it has a job
    return;
  }
  try {
    jobs.set(m.id, { fd: openSync(m.path, "r"), size: m.size, hashed: 0, hasher: new Bun.CryptoHasher(m.algorithm), lastGrowth: Date.now(), whole: false });
  } catch (error) {
    return report({ id: m.id, hashed: 0, error: (error as Error).message });
  }
  if (!pumping) void pump();
};

/** Hashes what every followed file has gained, until none is left; idles 1 ms when nothing grew. */
async function pump(): Promise<void> {
  pumping = true;
  try {
    while (jobs.size > 0) {
      let progressed = false;
      for (const [id, job] of jobs) progressed = step(id, job) || progressed;
      // Back to the event loop between passes: a cancel or a new file arrives as a message.
      await Bun.sleep(progressed ? 0 : 1);
    }
  } finally {
    pumping = false;
  }
}

function step(id: number, job: Job): boolean {
  try {
    // Bun.write of a body it holds whole fallocate()s the file to its full length before
    // writing it: a length short of the end was written, the full length only once the writer says so.
    const length = fstatSync(job.fd).size;
    const available = length < job.size ? length : job.whole ? job.size : job.hashed;
    if (available <= job.hashed) {
      if (Date.now() - job.lastGrowth > GIVE_UP_MS) fail(id, "the file stopped growing");
      return false;
    }
    const n = readSync(job.fd, buffer, 0, Math.min(READ_BYTES, available - job.hashed), job.hashed);
    job.hasher.update(buffer.subarray(0, n));
    job.hashed += n;
    job.lastGrowth = Date.now();
    if (job.hashed < job.size) report({ id, hashed: job.hashed });
    else {
      report({ id, hashed: job.hashed, digest: job.hasher.digest("hex") });
      end(id);
    }
    return true;
  } catch (error) {
    fail(id, (error as Error).message);
    return false;
  }
}

function fail(id: number, error: string): void {
  report({ id, hashed: jobs.get(id)?.hashed ?? 0, error });
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

function report(r: HashReport): void {
  self.postMessage(r);
}
