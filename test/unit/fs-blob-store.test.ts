import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobIntegrityError } from "../../src/cache/blob-store.ts";
import { startFileWriter } from "../../src/cache/file-writer.ts";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "ferry-fsstore-"));
  dirs.push(d);
  return d;
}

async function put(store: FsBlobStore, bytes: Uint8Array): Promise<string> {
  const digest = digestOf(bytes);
  const w = await store.begin({ registry: "docker.io", digest });
  await w.write(bytes.subarray(0, 10));
  await w.write(bytes.subarray(10));
  await w.commit(bytes.byteLength);
  return digest;
}

const blob = (n: number, fill: number) => new Uint8Array(n).fill(fill);

describe("FsBlobStore", () => {
  test("a verified blob is published; a wrong one is discarded with no trace", async () => {
    const dir = tempDir();
    const store = new FsBlobStore(dir);
    await store.init();
    const digest = await put(store, blob(100, 1));
    expect((await store.stat({ registry: "docker.io", digest }))?.size).toBe(100);
    const wrong = await store.begin({ registry: "docker.io", digest: digestOf(blob(100, 2)) });
    await wrong.write(blob(100, 3));
    await expect(wrong.commit(100)).rejects.toBeInstanceOf(BlobIntegrityError);
    expect(await store.stat({ registry: "docker.io", digest: digestOf(blob(100, 2)) })).toBeUndefined();
    const short = await store.begin({ registry: "docker.io", digest: digestOf(blob(100, 4)) });
    await short.write(blob(100, 4));
    await expect(short.commit(101)).rejects.toThrow("length mismatch");
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
  });

  test("a piped body of Buffer views into shared memory is copied to the writer thread, never detached from its owner", async () => {
    expect(await startFileWriter()).toBe(true);
    const store = new FsBlobStore(tempDir(), { hashOnWorker: true });
    await store.init();
    // Two chunks that share one ArrayBuffer with bytes the caller still uses (Buffer.slice is a view).
    const shared = Buffer.alloc(3000, 9);
    const chunks = [shared.subarray(1000, 2000), shared.subarray(2000, 3000)];
    const digest = digestOf(Buffer.concat(chunks));
    const w = await store.begin({ registry: "docker.io", digest }, 2000);
    w.expectSize?.(2000);
    await w.pipe!(new ReadableStream({ start: (c) => (chunks.forEach((chunk) => c.enqueue(chunk)), c.close()) }), () => {});
    expect((await w.commit(2000)).size).toBe(2000);
    expect(shared.byteLength).toBe(3000);
    expect(shared[0]).toBe(9);
  });

  test("temp files left by a crash are removed at start-up", async () => {
    const dir = tempDir();
    const a = new FsBlobStore(dir);
    await a.init();
    // A download the process died in the middle of: its temp file stays behind.
    writeFileSync(join(dir, "tmp", "91c296acafc120f6.999.1"), blob(5, 9));
    await new FsBlobStore(dir).init();
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
  });

  test("start-up removes only temp files of dead processes, never a live one's", async () => {
    const dir = tempDir();
    await new FsBlobStore(dir).init();
    // Another ferry on the same cache dir, downloading right now: a live pid.
    const other = Bun.spawn(["sleep", "30"]);
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    try {
      writeFileSync(join(dir, "tmp", `91c296acafc120f6.${other.pid}.1`), blob(5, 9));
      writeFileSync(join(dir, "tmp", `91c296acafc120f6.${dead.pid}.1`), blob(5, 9));
      writeFileSync(join(dir, "tmp", `.ready-${dead.pid}`), "ok");
      await new FsBlobStore(dir).init();
      expect(readdirSync(join(dir, "tmp"))).toEqual([`91c296acafc120f6.${other.pid}.1`]);
    } finally {
      other.kill();
      await other.exited;
    }
  });

  test("max_size counts the bytes of downloads in progress", async () => {
    const dir = tempDir();
    const store = new FsBlobStore(dir, { maxSize: 1000 });
    await store.init();
    const a = await put(store, blob(600, 1));
    // A 600-byte download starts: 600 cached + 600 on their way > 1000, so a makes room now.
    const w = await store.begin({ registry: "docker.io", digest: digestOf(blob(600, 2)) }, 600);
    await store.enforceMaxSize();
    expect(await store.stat({ registry: "docker.io", digest: a })).toBeUndefined();
    await w.write(blob(600, 2));
    await w.commit(600);
    expect(store.usage.size).toBe(600);
  });

  test("blobs deleted by another process (ferry prune) leave the running index", async () => {
    const dir = tempDir();
    const server = new FsBlobStore(dir, { maxSize: 10_000 });
    await server.init();
    const a = await put(server, blob(400, 1));
    const b = await put(server, blob(400, 2));
    expect(server.usage.size).toBe(800);
    const prune = new FsBlobStore(dir);
    await prune.usage.load(join(dir, "blobs"));
    await prune.usage.evictTo(400); // removes a, the oldest
    expect(await server.stat({ registry: "docker.io", digest: a })).toBeUndefined();
    expect(server.usage.size).toBe(400); // noticed on the miss
    await server.rescan();
    expect(server.usage.size).toBe(400);
    expect(server.usage.count).toBe(1);
    void b;
  });

  test("max_size evicts the least recently used blobs, down to 90%", async () => {
    const dir = tempDir();
    const evictions: number[] = [];
    const store = new FsBlobStore(dir, { maxSize: 1000, onEvict: (r) => evictions.push(r.files) });
    await store.init();
    const a = await put(store, blob(300, 1));
    const b = await put(store, blob(300, 2));
    const c = await put(store, blob(300, 3));
    store.touch({ registry: "docker.io", digest: a }); // a is now the most recently used
    const d = await put(store, blob(300, 4)); // 1200 > 1000: evict down to 900
    await store.enforceMaxSize();
    const present = async (digest: string) => (await store.stat({ registry: "docker.io", digest })) !== undefined;
    expect(await present(b)).toBe(false);
    expect(await present(c)).toBe(true);
    expect(await present(a)).toBe(true);
    expect(await present(d)).toBe(true);
    expect(store.usage.size).toBe(900);
    expect(evictions).toEqual([1]);
  });

  test("the usage index is rebuilt from disk, and an over-full cache is trimmed at start-up", async () => {
    const dir = tempDir();
    const big = new FsBlobStore(dir);
    await big.init();
    const first = await put(big, blob(400, 1));
    const second = await put(big, blob(400, 2));
    // The index orders by mtime (last use): make `first` the older one by an hour, not by waiting.
    const hourAgo = Date.now() / 1000 - 3600;
    utimesSync(big.pathOf({ registry: "docker.io", digest: first }), hourAgo - 60, hourAgo - 60);
    utimesSync(big.pathOf({ registry: "docker.io", digest: second }), hourAgo, hourAgo);
    const small = new FsBlobStore(dir, { maxSize: 500 });
    await small.init();
    await small.indexed; // the index loads in the background; the trim waits for it
    expect(small.usage.size).toBe(400);
    expect(existsSync(small.pathOf({ registry: "docker.io", digest: first }))).toBe(false);
    expect(existsSync(small.pathOf({ registry: "docker.io", digest: second }))).toBe(true);
  });

  test("keys that are not a valid registry + digest never become a path", () => {
    const store = new FsBlobStore(tempDir());
    expect(() => store.pathOf({ registry: "../etc", digest: digestOf(blob(1, 1)) })).toThrow();
    expect(() => store.pathOf({ registry: "docker.io", digest: "sha256:../../passwd" })).toThrow();
  });
});
