// The local tier's usage index is built in the background at start-up (issue 21, scenario 9):
// blobs are served while it loads, what happens to blobs meanwhile counts exactly once, and
// max_size eviction waits for the complete index. The load is held at one of its pauses
// (the store's `indexPause`) so these tests act mid-load deterministically.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "ferry-index-"));
  dirs.push(d);
  return d;
}

const REGISTRY = "docker.io";
const content = (i: number, size = 100) => {
  const b = Buffer.alloc(size, i % 251);
  b.write(`blob ${i}\n`);
  return new Uint8Array(b);
};

/** Writes `n` blob files as a previous run left them, oldest (i = 0) first by an hour's spread of mtimes. */
function writeTier(dir: string, n: number, size = 100): string[] {
  const layout = new FsBlobStore(dir);
  const digests: string[] = [];
  const now = Date.now() / 1000;
  for (let i = 0; i < n; i++) {
    const bytes = content(i, size);
    const digest = digestOf(bytes);
    const path = layout.pathOf({ registry: REGISTRY, digest });
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, bytes);
    const mtime = now - 3600 + i;
    utimesSync(path, mtime, mtime);
    digests.push(digest);
  }
  return digests;
}

/** What is on disk under blobs/: the truth the index must match once loaded. */
function onDisk(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else {
        files++;
        bytes += statSync(join(d, e.name)).size;
      }
    }
  };
  walk(join(dir, "blobs"));
  return { files, bytes };
}

/** An indexPause that lets `free` pauses of `phase` pass, then holds the load until released (bounded by a timer). */
function holdAfter(free: number, phase: "walk" | "merge" = "walk") {
  let passed = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const held = new Promise<void>((r) => (reached = r));
  // Never hold a test forever: a load that never pauses (or never resumes) fails its assertions instead.
  const timer = setTimeout(() => (reached(), release()), 20_000);
  return {
    pause: async (at: "walk" | "merge") => {
      if (at !== phase || ++passed <= free) return;
      reached();
      await released;
    },
    /** Resolves once the load is held. */
    held,
    release: () => {
      clearTimeout(timer);
      release();
    },
  };
}

async function put(store: FsBlobStore, bytes: Uint8Array): Promise<string> {
  const digest = digestOf(bytes);
  const w = await store.begin({ registry: REGISTRY, digest }, bytes.byteLength);
  await w.write(bytes);
  await w.commit(bytes.byteLength);
  return digest;
}

describe("start-up index of the local tier", () => {
  test("init() does not wait for the index: cached blobs are found and new ones stored while it loads", async () => {
    const dir = tempDir();
    const digests = writeTier(dir, 300);
    const gate = holdAfter(2);
    const store = new FsBlobStore(dir, { indexPause: gate.pause });
    await store.init();
    await gate.held;
    // Mid-load: the index is partial, yet every cached blob is there with its bytes.
    expect(store.usage.complete).toBe(false);
    expect(store.usage.count).toBeLessThan(300);
    for (const [i, digest] of digests.entries()) {
      const info = await store.stat({ registry: REGISTRY, digest });
      expect(info?.size).toBe(100);
      expect(new Uint8Array(await Bun.file(info!.path).arrayBuffer())).toEqual(content(i));
    }
    const fresh = await put(store, content(1000, 50));
    expect((await store.stat({ registry: REGISTRY, digest: fresh }))?.size).toBe(50);
    gate.release();
    await store.indexed;
    expect(store.usage.complete).toBe(true);
    expect(store.usage.count).toBe(301);
    expect(store.usage.size).toBe(300 * 100 + 50);
  });

  // Held while the walk is under way (it pauses after each directory at least: part of the
  // tier seen, the rest not), and held during the merge (more files than one merge batch,
  // 2048: most are in order by then), so both ways a change can meet the load are covered.
  test.each([
    ["walk", 60],
    ["merge", 2200],
  ] as const)("blobs committed, re-committed, touched and removed during the %s count once, in the order of use", async (phase, files) => {
    const dir = tempDir();
    const digests = writeTier(dir, files);
    const gate = holdAfter(phase === "walk" ? 15 : 0, phase);
    const store = new FsBlobStore(dir, { indexPause: gate.pause });
    await store.init();
    await gate.held;
    expect(store.usage.complete).toBe(false);
    const key = (digest: string) => ({ registry: REGISTRY, digest });
    // A blob already on disk stored again (the load may have counted it, or may yet).
    await put(store, content(7));
    // A new blob.
    const fresh = await put(store, content(50_000));
    // Blobs served now, one of them twice: the newest in use, whether the load has passed them or not.
    const served = [digests[0]!, digests[30]!, digests[59]!, digests[1]!, digests[0]!];
    for (const d of served) {
      expect(await store.stat(key(d))).toBeDefined();
      store.touch(key(d));
    }
    // A blob another ferry on the same cache dir stored just now (where the load may have passed), served here.
    const other = content(60_000);
    const otherPath = store.pathOf(key(digestOf(other)));
    mkdirSync(dirname(otherPath), { recursive: true });
    writeFileSync(otherPath, other);
    expect(await store.stat(key(digestOf(other)))).toBeDefined();
    store.touch(key(digestOf(other)));
    // Blobs deleted behind the server's back (ferry prune), noticed on a miss.
    const pruned = [digests[2]!, digests[40]!];
    for (const d of pruned) {
      rmSync(store.pathOf(key(d)));
      expect(await store.stat(key(d))).toBeUndefined();
    }
    gate.release();
    await store.indexed;
    expect({ files: store.usage.count, bytes: store.usage.size }).toEqual(onDisk(dir));
    expect(store.usage.count).toBe(files + 2 - 2);
    // Least recently used first: evicting down to the last seven uses keeps exactly those, and
    // evicting one more at a time takes them in the order they were used.
    const lastUses = [digestOf(content(7)), fresh, digests[30]!, digests[59]!, digests[1]!, digests[0]!, digestOf(other)];
    await store.usage.evictTo(700);
    expect(onDisk(dir)).toEqual({ files: 7, bytes: 700 });
    const order: string[] = [];
    for (let left = 6; left >= 0; left--) {
      await store.usage.evictTo(left * 100);
      order.push(...lastUses.filter((d) => !order.includes(d) && !existsSync(store.pathOf(key(d)))));
    }
    expect(order).toEqual(lastUses);
  });

  test("max_size eviction waits for the complete index, then removes the least recently used", async () => {
    const dir = tempDir();
    const digests = writeTier(dir, 40); // 4000 bytes on disk
    const gate = holdAfter(3);
    const evictions: { files: number; bytes: number; remaining: number }[] = [];
    const store = new FsBlobStore(dir, { maxSize: 250, indexPause: gate.pause, onEvict: (r) => evictions.push(r) });
    await store.init();
    await gate.held;
    // Three new blobs while the index is partial: were it trusted, they (the newest) would go first.
    const fresh = [await put(store, content(100)), await put(store, content(101)), await put(store, content(102))];
    for (const d of [...fresh, ...digests]) expect(existsSync(store.pathOf({ registry: REGISTRY, digest: d }))).toBe(true);
    expect(evictions).toEqual([]);
    gate.release();
    await store.indexed;
    await store.enforceMaxSize();
    // One run, on the whole index, down to 90% of 250: the two most recently stored blobs stay.
    const present = (d: string) => existsSync(store.pathOf({ registry: REGISTRY, digest: d }));
    expect(fresh.map(present)).toEqual([false, true, true]);
    expect(digests.filter(present)).toEqual([]);
    expect(store.usage.size).toBe(200);
    expect(onDisk(dir)).toEqual({ files: 2, bytes: 200 });
    expect(evictions).toEqual([{ files: 41, bytes: 4100, remaining: 200 }]);
  });
});
