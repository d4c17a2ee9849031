// Least-recently-used bookkeeping for the local blob tier: sizes and last use of every
// blob file, so the tier can be kept under [cache] max_size. Built at start-up from the
// files' mtimes (touch() moves mtime forward), in the background, then kept in memory.
import { statSync } from "node:fs";
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * Longest run of stat calls between two pauses of the load. They are synchronous: microseconds
 * each on a warm inode cache, far less than a thread-pool round trip per file (bench/README.md, 9).
 */
const SLICE_MS = 4;
/** Entries put in order between two pauses of the load. */
const MERGE_BATCH = 2048;

interface Found {
  path: string;
  size: number;
  mtime: number;
}

/**
 * What happened to files while load() walks the tier, applied over what the walk found:
 * `used` in order of use (size undefined: served, known to the walk only), `gone` removed.
 */
interface LoadLog {
  used: Map<string, number | undefined>;
  gone: Set<string>;
  /** Sizes of served files the walk may not reach (stat'ed when served). */
  lookups: Set<Promise<void>>;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class LruIndex {
  // Map iteration order is insertion order: re-inserting on use keeps the oldest first.
  private entries = new Map<string, number>();
  private total = 0;
  private log: LoadLog | undefined;
  private loading: Promise<void> | undefined;

  private sliceStart = 0;

  /** `pause` is awaited between batches of the load (after each directory, at least), so serving goes on meanwhile. */
  constructor(private readonly pause: (phase: "walk" | "merge") => Promise<void> = nextTurn) {}

  /** Bytes counted (while loading: only what was stored or served since). */
  get size(): number {
    return this.total;
  }

  get count(): number {
    return this.entries.size;
  }

  /** Whether every file is counted: eviction acts only on a complete index. */
  get complete(): boolean {
    return this.log === undefined;
  }

  /** Resolves when the load under way (if any) is done. */
  whenComplete(): Promise<void> {
    return this.loading ?? Promise.resolve();
  }

  /**
   * Walks `dir` and records every file, oldest mtime first. add(), touch() and remove()
   * may be called meanwhile; each file ends up counted once, ordered by its last use.
   */
  load(dir: string): Promise<void> {
    this.log ??= { used: new Map(), gone: new Set(), lookups: new Set() };
    this.loading ??= this.walkAndMerge(dir).finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async walkAndMerge(dir: string): Promise<void> {
    const runs: Found[][] = [];
    try {
      await this.walk(dir, runs);
      await this.merge(runs);
    } finally {
      this.log = undefined;
    }
  }

  /** One run per directory, each sorted by mtime (sorting them in pieces keeps every step short). */
  private async walk(d: string, runs: Found[][]): Promise<void> {
    let names: { name: string; isDirectory(): boolean }[];
    try {
      names = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    const others: string[] = [];
    for (const e of names) {
      if (e.isDirectory()) await this.walk(join(d, e.name), runs);
      else others.push(join(d, e.name));
    }
    const run: Found[] = [];
    this.sliceStart = performance.now();
    for (const path of others) {
      let s: ReturnType<typeof statSync>;
      try {
        s = statSync(path, { throwIfNoEntry: false });
      } catch {
        continue; // unreadable: not counted, as a file that is gone
      }
      if (s?.isFile()) run.push({ path, size: s.size, mtime: s.mtimeMs });
      else if (s?.isDirectory()) await this.walk(path, runs); // a file system that doesn't tell types in readdir
      if (performance.now() - this.sliceStart >= SLICE_MS) await this.breathe("walk");
    }
    if (run.length) runs.push(run.sort((a, b) => a.mtime - b.mtime));
    await this.breathe("walk");
  }

  private async breathe(phase: "walk" | "merge"): Promise<void> {
    await this.pause(phase);
    this.sliceStart = performance.now();
  }

  /** Merges the runs oldest first, then applies what happened during the load; swaps in the result. */
  private async merge(runs: Found[][]): Promise<void> {
    const ordered = new Map<string, number>();
    const heap = new RunHeap(runs);
    for (let n = 0; ; n++) {
      const f = heap.pop();
      if (!f) break;
      const used = this.log!.used;
      if (used.has(f.path)) {
        if (used.get(f.path) === undefined) used.set(f.path, f.size); // keeps its place in order of use
      } else if (!this.log!.gone.has(f.path)) ordered.set(f.path, f.size);
      if (n % MERGE_BATCH === MERGE_BATCH - 1) await this.breathe("merge");
    }
    // Served files the walk did not see (stored by another process after it passed): their own stat.
    while (this.log!.lookups.size) await Promise.all(this.log!.lookups);
    // From here on synchronous: nothing can change between applying the log and the swap.
    const { used, gone } = this.log!;
    for (const path of gone) ordered.delete(path);
    for (const [path, size] of used) {
      ordered.delete(path);
      if (size !== undefined) ordered.set(path, size);
    }
    let total = 0;
    for (const size of ordered.values()) total += size;
    this.entries = ordered;
    this.total = total;
  }

  /** Drops files that are gone (another process deleted them), keeping the order of the rest. */
  async forgetMissing(): Promise<void> {
    for (const path of [...this.entries.keys()]) if (!(await stat(path).catch(() => undefined))) this.remove(path);
  }

  add(path: string, size: number): void {
    this.remove(path);
    this.entries.set(path, size);
    this.total += size;
    if (this.log) {
      this.log.gone.delete(path);
      this.log.used.set(path, size);
    }
  }

  touch(path: string): void {
    const size = this.entries.get(path);
    if (this.log) this.noteUse(this.log, path, size);
    if (size === undefined) return;
    this.entries.delete(path);
    this.entries.set(path, size);
  }

  remove(path: string): void {
    if (this.log) {
      this.log.used.delete(path);
      this.log.gone.add(path);
    }
    const size = this.entries.get(path);
    if (size === undefined) return;
    this.entries.delete(path);
    this.total -= size;
  }

  /** A file used during the load moves to the newest end; one not counted yet gets its size from the walk or its own stat. */
  private noteUse(log: LoadLog, path: string, size: number | undefined): void {
    const known = size ?? log.used.get(path);
    const wasLooked = log.used.has(path);
    log.used.delete(path);
    log.used.set(path, known);
    if (known !== undefined || wasLooked) return;
    log.gone.delete(path);
    const lookup = stat(path).then(
      (s) => {
        if (this.log === log && log.used.has(path) && log.used.get(path) === undefined) log.used.set(path, s.size);
      },
      () => {
        if (this.log === log && log.used.get(path) === undefined) this.remove(path);
      },
    ).finally(() => log.lookups.delete(lookup));
    log.lookups.add(lookup);
  }

  /** What evictTo would remove, without removing it. */
  planEvictTo(target: number): { files: number; bytes: number } {
    let total = this.total;
    let files = 0;
    let bytes = 0;
    for (const size of this.entries.values()) {
      if (total <= target) break;
      total -= size;
      files++;
      bytes += size;
    }
    return { files, bytes };
  }

  /** Deletes (or, dry, counts) files last used before `cutoff` (ms epoch, from mtime). */
  async evictOlderThan(cutoff: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    for (const [path, size] of [...this.entries]) {
      const s = await stat(path).catch(() => undefined);
      if (!s || s.mtimeMs >= cutoff) continue;
      if (!dryRun) {
        this.remove(path);
        await rm(path, { force: true });
      }
      files++;
      bytes += size;
    }
    return { files, bytes };
  }

  /**
   * Deletes least-recently-used files until the total is at most `target` bytes.
   * A file being served stays readable: Linux keeps an unlinked inode until closed.
   */
  async evictTo(target: number): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    for (const [path, size] of this.entries) {
      if (this.total <= target) break;
      this.remove(path);
      await rm(path, { force: true });
      files++;
      bytes += size;
    }
    return { files, bytes };
  }
}

/** A min-heap of sorted runs by their next file's mtime: merges them in O(n log runs). */
class RunHeap {
  private readonly heads: { run: Found[]; at: number }[];

  constructor(runs: Found[][]) {
    this.heads = runs.filter((r) => r.length).map((run) => ({ run, at: 0 }));
    for (let i = (this.heads.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  pop(): Found | undefined {
    const top = this.heads[0];
    if (!top) return undefined;
    const found = top.run[top.at++]!;
    if (top.at === top.run.length) {
      const last = this.heads.pop()!;
      if (this.heads.length) this.heads[0] = last;
    }
    if (this.heads.length) this.down(0);
    return found;
  }

  private key(i: number): number {
    const h = this.heads[i]!;
    return h.run[h.at]!.mtime;
  }

  private down(i: number): void {
    const n = this.heads.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.key(l) < this.key(m)) m = l;
      if (r < n && this.key(r) < this.key(m)) m = r;
      if (m === i) return;
      [this.heads[i], this.heads[m]] = [this.heads[m]!, this.heads[i]!];
      i = m;
    }
  }
}
