// A soft memory limit ([server] memory_limit), in the spirit of Go's GOMEMLIMIT: while the
// process's RSS is over it, a full collection that also hands freed pages back to the
// kernel. Under request load JSC collects at its own pace and the allocators keep what it
// freed, so RSS climbed 25–80 MiB above the live set in 2 s of wrk on a cached blob.
// It is not a cap: a live set above the limit stays, and collections then back off.
// While blob bytes flow, chunk-garbage.ts collects on its own budget instead: returning
// pages then made every next chunk fault fresh memory (8 concurrent cold pulls: 7.2 → 9.1 s).
import { chunkBytesCounted } from "./chunk-garbage.ts";

/** How often RSS is read (one read of /proc/self/statm). */
const CHECK_EVERY_MS = 50;
/** Collections take at most this share of the time: the next waits its duration / share. */
const MAX_TIME_SHARE = 0.05;
/** And never run closer together than this. */
const MIN_GAP_MS = 200;
/** Transfers count as over once no chunk went by for this long. */
const CHUNKS_QUIET_MS = 1_000;

export interface MemoryLimitDeps {
  rss: () => number;
  /** A full collection that returns freed memory to the kernel. */
  collect: () => void;
  now: () => number;
  /** Whether blob transfers are under way (their own collections bound memory then). */
  transfers: () => boolean;
}

/** Whether chunk bytes were counted within CHUNKS_QUIET_MS (seen at each check, so the blob stream reads no clock). */
function transfersRunning(): () => boolean {
  let seen = chunkBytesCounted();
  let changedAt = -Infinity;
  return () => {
    const now = performance.now();
    if (chunkBytesCounted() !== seen) {
      seen = chunkBytesCounted();
      changedAt = now;
    }
    return now - changedAt < CHUNKS_QUIET_MS;
  };
}

const runtimeDeps = (): MemoryLimitDeps => ({
  rss: () => process.memoryUsage.rss(),
  collect: () => Bun.gc(true),
  now: () => performance.now(),
  transfers: transfersRunning(),
});

export class MemoryLimit {
  /** Collections run because RSS was over the limit (ferry_memory_limit_collections_total). */
  collections = 0;
  private notBefore = 0;
  private timer: Timer | undefined;

  /** `limitBytes` 0 turns it off; settable (a reload applies a new limit). */
  constructor(
    public limitBytes: number,
    private readonly deps: MemoryLimitDeps = runtimeDeps(),
  ) {}

  /** One check: collects if RSS is over the limit and the last collection is far enough behind. */
  check(): boolean {
    if (this.limitBytes <= 0) return false;
    const start = this.deps.now();
    const transfers = this.deps.transfers(); // asked at every check: it notices chunks as they go by
    if (transfers || start < this.notBefore || this.deps.rss() <= this.limitBytes) return false;
    this.deps.collect();
    this.collections++;
    this.notBefore = start + Math.max(MIN_GAP_MS, (this.deps.now() - start) / MAX_TIME_SHARE);
    return true;
  }

  start(): this {
    this.timer ??= setInterval(() => this.check(), CHECK_EVERY_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
