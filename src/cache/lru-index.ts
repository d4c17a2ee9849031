// Least-recently-used bookkeeping for the local blob tier: sizes and last use of every
// blob file, so the tier can be kept under [cache] max_size. Built once at start-up from
// the files' mtimes (touch() moves mtime forward), then kept in memory.
import { readdir, rm, stat } from "node:fs/promises";
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

  /** Walks `dir` and records every file, oldest mtime first. */
  async load(dir: string): Promise<void> {
    const found: { path: string; size: number; mtime: number }[] = [];
    const walk = async (d: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(d);
      } catch {
        return;
      }
      for (const name of names) {
        const p = join(d, name);
        const s = await stat(p).catch(() => undefined);
        if (!s) continue;
        if (s.isDirectory()) await walk(p);
        else if (s.isFile()) found.push({ path: p, size: s.size, mtime: s.mtimeMs });
      }
    };
    await walk(dir);
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.add(f.path, f.size);
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
