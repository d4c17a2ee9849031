import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobIntegrityError } from "../../src/cache/blob-store.ts";
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

  test("temp files left by a crash are removed at start-up", async () => {
    const dir = tempDir();
    const a = new FsBlobStore(dir);
    await a.init();
    // A download the process died in the middle of: its temp file stays behind.
    writeFileSync(join(dir, "tmp", "91c296acafc120f6.999.1"), blob(5, 9));
    await new FsBlobStore(dir).init();
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
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
    await Bun.sleep(20);
    const second = await put(big, blob(400, 2));
    const small = new FsBlobStore(dir, { maxSize: 500 });
    await small.init();
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
