// Least-recently-used bookkeeping for the local blob tier: sizes and last use of every
// blob file, so the tier can be kept under [cache] max_size. Built once at start-up from
// the files' mtimes (touch() moves mtime forward), then kept in memory.
import { type Dirent, type Stats, readdirSync, statSync } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";

export class LruIndex {
  // Map iteration order is insertion order: re-inserting on use keeps the oldest first.
  private readonly entries = new Map<string, number>();
  private total = 0;

  get size(): number {
    return this.total;
  }

  get count(): number {
    return this.entries.size;
  }

  /**
   * Walks `dir` and records every file, oldest mtime first. Synchronous, at start-up
   * (before serving): a thread-pool round trip and a promise per file took twice as long
   * and left more garbage.
   */
  async load(dir: string): Promise<void> {
    const paths: string[] = [];
    const sizes: number[] = [];
    const mtimes: number[] = [];
    const walk = (d: string): void => {
      let entries: Dirent[];
      try {
        entries = readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) {
          walk(p);
          continue;
        }
        let s: Stats | undefined;
        try {
          s = statSync(p);
        } catch {
          continue; // gone meanwhile, or unreadable
        }
        if (s?.isDirectory()) walk(p); // a file system that reports no entry types
        else if (s?.isFile()) {
          paths.push(p);
          sizes.push(s.size);
          mtimes.push(s.mtimeMs);
        }
      }
    };
    walk(dir);
    const order = Array.from(paths.keys()).sort((a, b) => mtimes[a]! - mtimes[b]!);
    for (const i of order) this.add(paths[i]!, sizes[i]!);
  }

  /** Drops files that are gone (another process deleted them), keeping the order of the rest. */
  async forgetMissing(): Promise<void> {
    for (const path of [...this.entries.keys()]) if (!(await stat(path).catch(() => undefined))) this.remove(path);
  }

  add(path: string, size: number): void {
    this.remove(path);
    this.entries.set(path, size);
    this.total += size;
  }

  touch(path: string): void {
    const size = this.entries.get(path);
    if (size === undefined) return;
    this.entries.delete(path);
    this.entries.set(path, size);
  }

  remove(path: string): void {
    const size = this.entries.get(path);
    if (size === undefined) return;
    this.entries.delete(path);
    this.total -= size;
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
