// When the short-lived byte buffers of blob transfers (upstream chunks, temp-file reads, S3
// parts) are collected: every one is a fresh buffer, garbage once sent or uploaded.
import { fullGC } from "bun:jsc";

/** Chunk bytes allocated (all downloads and uploads) since the last collection. */
let chunkBytes = 0;
const GC_EVERY_BYTES = 64 * 1024 * 1024;
const GC_EVERY_MIN_BYTES = 16 * 1024 * 1024;
const GC_SETTLE_BYTES = 8 * 1024 * 1024;
/** Downloads read by more than one client now (fan-in). */
let fannedOut = 0;
/** Bytes of live chunks that downloads keep for readers that keep up. */
let liveBytes = 0;
/** Chunk bytes counted since start (never reset): whether transfers run, read off the hot path. */
let chunkBytesEver = 0;

/**
 * Gigabytes of short-lived garbage per download, which the collector left to pile up (a
 * single cold 300 MiB GET peaked at 160 MiB RSS). A full collection every 64 MiB keeps RSS
 * near the live set (a cold 300 MiB GET peaks at ~150 MiB, 32 cold clients at ~160 MiB).
 * Every 128 MiB went up to 185 MiB with 32 clients.
 *
 * JSC's own full collection, not Bun.gc(true): that one also makes the allocator hand
 * every freed page back to the kernel at once, so the next 64 MiB of chunks were
 * faulted in fresh: half the page faults of a cold GET (48k of them for 300 MiB, 23k
 * without) and 5–10% of its CPU. Pages still go back to the kernel on the allocator's
 * own schedule (RSS is back near 80 MiB seconds after the download).
 *
 * Live chunks count against the same 64 MiB. While a download is read by several clients,
 * half as often: 32 cold clients of one blob peaked near 200 MiB at 64 MiB of chunk garbage
 * per collection and ~140 MiB at 32, with no more CPU (bench/ scenario 4).
 */
export function countChunkGarbage(bytes: number): void {
  chunkBytes += bytes;
  chunkBytesEver += bytes;
  if (chunkBytes >= gcEvery()) {
    chunkBytes = 0;
    fullGC();
  }
}

/**
 * When a download ends, what it left since the last collection (up to 64 MiB) goes too:
 * left to the collector's own pace, it stayed while the next work (a wrk run on small
 * cached blobs after a cold 300 MiB GET) piled its garbage on top.
 */
export function settleChunkGarbage(): void {
  if (chunkBytes < GC_SETTLE_BYTES) return;
  chunkBytes = 0;
  fullGC();
}

/** Chunk bytes counted so far: while this grows, the collections above bound memory. */
export function chunkBytesCounted(): number {
  return chunkBytesEver;
}

/** A download's kept chunks grew (or shrank, negative) by `bytes`. */
export function countLiveChunks(bytes: number): void {
  liveBytes += bytes;
}

/** A download became (1) or stopped being (-1) read by several clients. */
export function countFanIn(delta: 1 | -1): void {
  fannedOut += delta;
}

function gcEvery(): number {
  return Math.max(GC_EVERY_MIN_BYTES, (fannedOut > 0 ? GC_EVERY_BYTES / 2 : GC_EVERY_BYTES) - liveBytes);
}
