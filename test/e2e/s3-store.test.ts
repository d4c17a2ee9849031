// The shared blob tier (S3BlobStore) against a real S3: Ceph's radosgw on loopback
// (test/harness/ceph.ts), plus a smoke test of the Redis harness.
//
// Every test here uses RGW, not s3rver: fidelity is the point. RGW checks SigV4
// signatures and presigned expiry, keeps a multipart object invisible until
// CompleteMultipartUpload, aborts and lists multipart uploads for real, and refuses
// parts under 5 MiB but the last. Part sizes are also recorded as the store sends them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import Redis from "ioredis";
import { BlobIntegrityError, type BlobKey } from "../../src/cache/blob-store.ts";
import { RemoteBlobNotFoundError, RemoteStoreError } from "../../src/cache/remote-blob-store.ts";
import { S3BlobStore, objectKeyFor, parseObjectKey, type S3Config } from "../../src/cache/s3-blob-store.ts";
import { pidAlive, waitFor } from "../harness/proc.ts";
import { startRedis } from "../harness/redis.ts";
import { startCeph, type CephS3 } from "../harness/ceph.ts";

const MiB = 1024 * 1024;
const REGISTRY = "registry.test:5000";

/** Deterministic pseudo-random bytes (xorshift32), so every run uploads the same blob. */
function bytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, Math.floor(n / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < n; i++) out[i] = i & 0xff;
  return out;
}

const sha256 = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Writes `data` in uneven chunks: 1 B, odd sizes, 3 MiB+5 (crosses part boundaries). */
async function writeUneven(upload: { write(c: Uint8Array): Promise<void> }, data: Uint8Array, limit = data.byteLength) {
  const sizes = [1, 777, 65_536, 3 * MiB + 5, 123_457, 1_000_003, 4093];
  let off = 0;
  for (let i = 0; off < limit; i++) {
    const n = Math.min(sizes[i % sizes.length]!, limit - off);
    await upload.write(data.subarray(off, off + n));
    off += n;
  }
}

let s3: CephS3;
let store: S3BlobStore;
let config: S3Config;
/** Body sizes of every UploadPart / PutObject the store sent, in order. */
const sent: { op: string; size: number }[] = [];

beforeAll(async () => {
  const t0 = performance.now();
  s3 = await startCeph({ bucket: "ferry-blobs" });
  console.log(`ceph (mon, osd, radosgw) up in ${Math.round(performance.now() - t0)} ms at ${s3.endpoint}`);
  config = {
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    region: s3.region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    forcePathStyle: true,
    prefix: "ferry/",
  };
  store = new S3BlobStore(config, { connectTimeoutMs: 1000, requestTimeoutMs: 1500, maxAttempts: 2 });
  store.bodyClient.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Body?: Uint8Array };
      if (context.commandName === "UploadPartCommand" || context.commandName === "PutObjectCommand") {
        sent.push({ op: context.commandName.replace("Command", ""), size: input.Body?.byteLength ?? -1 });
      }
      return next(args);
    },
    { step: "initialize", name: "recordBodies" },
  );
}, 30_000);

afterAll(async () => {
  store?.client.destroy();
  store?.bodyClient.destroy();
  await s3?.stop();
});

describe("S3BlobStore on Ceph RGW", () => {
  const big = bytes(20 * MiB, 42);
  const bigKey: BlobKey = { registry: REGISTRY, digest: sha256(big) };

  test("object keys: layout, validation, inverse", () => {
    const hex = bigKey.digest.slice(7);
    expect(objectKeyFor("ferry/", bigKey)).toBe(`ferry/blobs/registry.test_5000/sha256/${hex.slice(0, 2)}/${hex}`);
    expect(parseObjectKey("ferry/", objectKeyFor("ferry/", bigKey))).toEqual(bigKey);
    expect(parseObjectKey("ferry/", "ferry/blobs/x/sha256/00/abc")).toBeUndefined();
    for (const bad of [
      { registry: "../etc", digest: bigKey.digest },
      { registry: "a..b", digest: bigKey.digest },
      { registry: "Docker.io", digest: bigKey.digest },
      { registry: "docker.io/x", digest: bigKey.digest },
      { registry: "docker.io", digest: "sha256:abc" },
      { registry: "docker.io", digest: `md5:${"0".repeat(32)}` },
      { registry: "docker.io", digest: `sha256:${"A".repeat(64)}` },
    ]) {
      expect(() => objectKeyFor("", bad)).toThrow(/invalid blob key/);
      expect(() => store.beginUpload(bad)).toThrow();
    }
    expect(() => new S3BlobStore({ ...config, prefix: "/abs" })).toThrow(/prefix/);
    const cdn = new S3BlobStore({ ...config, publicBaseUrl: "https://cdn.example/mirror/" });
    return cdn.publicUrl(bigKey, 60).then((url) => {
      expect(url).toBe(`https://cdn.example/mirror/${objectKeyFor("ferry/", bigKey)}`);
      cdn.client.destroy();
    });
  }, 30_000);

  test("20 MiB multipart upload: invisible until complete, then stat/open/range/presigned URL", async () => {
    sent.length = 0;
    const t0 = performance.now();
    const upload = store.beginUpload(bigKey, big.byteLength);
    await writeUneven(upload, big);
    // Everything is written and two parts are up, yet nothing is visible.
    expect(await store.stat(bigKey)).toBeUndefined();
    expect(await s3.listKeys("ferry/")).toEqual([]);
    expect(await s3.pendingUploads("ferry/")).toHaveLength(1);
    await upload.complete();
    const tUpload = performance.now() - t0;
    expect(sent).toEqual([
      { op: "UploadPart", size: 8 * MiB },
      { op: "UploadPart", size: 8 * MiB },
      { op: "UploadPart", size: 4 * MiB },
    ]);
    expect(await s3.pendingUploads()).toEqual([]);
    expect(await store.stat(bigKey)).toEqual({ size: 20 * MiB });
    expect(await s3.listKeys("ferry/")).toEqual([objectKeyFor("ferry/", bigKey)]);

    const t1 = performance.now();
    const whole = await readAll((await store.open(bigKey)).body);
    const tRead = performance.now() - t1;
    expect(whole.byteLength).toBe(big.byteLength);
    expect(sha256(whole)).toBe(bigKey.digest);

    // A range across the first part boundary, and the tail.
    const start = 8 * MiB - 10;
    const end = 8 * MiB + 9;
    expect(await readAll((await store.open(bigKey, { start, end })).body)).toEqual(big.subarray(start, end + 1));
    expect(await readAll((await store.open(bigKey, { start: 20 * MiB - 3, end: 20 * MiB - 1 })).body)).toEqual(big.subarray(20 * MiB - 3));

    // A reader that gives up early cancels the body; the connection pool is not leaked.
    for (let i = 0; i < 60; i++) {
      const reader = (await store.open(bigKey)).body.getReader();
      expect((await reader.read()).done).toBe(false);
      await reader.cancel();
    }
    expect(await store.stat(bigKey)).toEqual({ size: 20 * MiB });

    // Presigned URL: plain fetch, whole and ranged.
    const url = await store.publicUrl(bigKey, 60);
    expect(url).toContain("X-Amz-Signature=");
    expect(url).not.toContain(s3.secretAccessKey + "&"); // the secret never appears in a URL
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(bigKey.digest);
    const ranged = await fetch(url, { headers: { Range: "bytes=100-199" } });
    expect(ranged.status).toBe(206);
    expect(new Uint8Array(await ranged.arrayBuffer())).toEqual(big.subarray(100, 200));
    console.log(`20 MiB: upload ${Math.round(tUpload)} ms, read ${Math.round(tRead)} ms`);
  }, 30_000);

  test("presigned URL expiry is enforced by RGW (ttl 1 s → 403 after ~2 s)", async () => {
    const url = await store.publicUrl(bigKey, 1);
    expect((await fetch(url, { headers: { Range: "bytes=0-0" } })).status).toBe(206);
    // The URL says when it expires (X-Amz-Date + X-Amz-Expires, whole seconds): wait for that.
    const q = new URL(url).searchParams;
    const signedAt = Date.parse(q.get("X-Amz-Date")!.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, "$1-$2-$3T$4:$5:$6Z"));
    const expiresAt = signedAt + (Number(q.get("X-Amz-Expires")) + 1) * 1000;
    await waitFor(() => Date.now() > expiresAt, { timeoutMs: 5_000, intervalMs: 20, what: "the presigned URL to expire" });
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("<Code>AccessDenied</Code>");
    await expect(store.publicUrl(bigKey, 0)).rejects.toThrow(RangeError);
    await expect(store.publicUrl(bigKey, 7 * 24 * 3600 + 1)).rejects.toThrow(RangeError);
  }, 30_000);

  test("SigV4 is checked: a wrong secret or a tampered presigned URL is refused", async () => {
    const wrong = new S3BlobStore({ ...config, secretAccessKey: `${config.secretAccessKey}x` }, { maxAttempts: 1 });
    const err = await wrong.stat(bigKey).catch((e: unknown) => e);
    wrong.client.destroy();
    expect(err).toBeInstanceOf(RemoteStoreError);
    expect((err as RemoteStoreError).httpStatus).toBe(403);
    expect((err as Error).message).not.toContain(config.secretAccessKey!);
    const url = new URL(await store.publicUrl(bigKey, 60));
    const sig = url.searchParams.get("X-Amz-Signature")!;
    url.searchParams.set("X-Amz-Signature", `${sig.slice(0, -1)}${sig.endsWith("0") ? "1" : "0"}`);
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  }, 30_000);

  test("RGW refuses a part under 5 MiB but the last at CompleteMultipartUpload, as S3 does", async () => {
    // What makes the part sizes recorded above worth asserting: RGW would refuse smaller ones.
    const c = s3.client();
    const Key = "ferry/blobs/too-small";
    const { UploadId } = await c.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key }));
    const parts = [];
    for (const PartNumber of [1, 2]) {
      const { ETag } = await c.send(new UploadPartCommand({ Bucket: s3.bucket, Key, UploadId, PartNumber, Body: bytes(1 * MiB, PartNumber) }));
      parts.push({ PartNumber, ETag });
    }
    const err = await c.send(new CompleteMultipartUploadCommand({ Bucket: s3.bucket, Key, UploadId, MultipartUpload: { Parts: parts } })).catch((e: unknown) => e);
    expect((err as { name?: string }).name).toBe("EntityTooSmall");
    await c.send(new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key, UploadId }));
    expect(await s3.pendingUploads()).toEqual([]);
    expect(await s3.listKeys(Key)).toEqual([]);
  }, 30_000);

  test("an upload aborted after 12 MiB leaves no object and no multipart upload", async () => {
    const data = bytes(20 * MiB, 7);
    const key: BlobKey = { registry: REGISTRY, digest: sha256(data) };
    const objectKey = objectKeyFor("ferry/", key);
    const upload = store.beginUpload(key, data.byteLength);
    await writeUneven(upload, data, 12 * MiB);
    expect(await s3.pendingUploads(objectKey)).toHaveLength(1); // one 8 MiB part is up
    await upload.abort();
    await upload.abort(); // idempotent
    expect(await s3.pendingUploads()).toEqual([]);
    expect(await store.stat(key)).toBeUndefined();
    expect(await s3.listKeys(objectKey)).toEqual([]);
    await expect(upload.write(new Uint8Array(1))).rejects.toThrow(/aborted/);
    await expect(upload.complete()).rejects.toThrow(/aborted/);
    expect(await store.stat(key)).toBeUndefined();
  }, 30_000);

  test("bytes that do not match the digest or size are never published", async () => {
    const data = bytes(10 * MiB, 9);
    const wrongKey: BlobKey = { registry: REGISTRY, digest: sha256(bytes(16, 1)) };
    // Multipart path: complete() verifies the digest before CompleteMultipartUpload.
    const up1 = store.beginUpload(wrongKey);
    await writeUneven(up1, data);
    expect(await s3.pendingUploads()).toHaveLength(1);
    const err = await up1.complete().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobIntegrityError);
    expect(await s3.pendingUploads()).toEqual([]);
    await up1.abort(); // safe after a failed complete
    // Single-PutObject path.
    const up2 = store.beginUpload(wrongKey);
    await up2.write(data.subarray(0, 1000));
    await expect(up2.complete()).rejects.toBeInstanceOf(BlobIntegrityError);
    // Size: more than announced is refused at write(), fewer at complete().
    const small = bytes(1000, 3);
    const smallKey: BlobKey = { registry: REGISTRY, digest: sha256(small) };
    const up3 = store.beginUpload(smallKey, 999);
    await expect(up3.write(small)).rejects.toBeInstanceOf(BlobIntegrityError);
    await up3.abort();
    const up4 = store.beginUpload(smallKey, 1001);
    await up4.write(small);
    await expect(up4.complete()).rejects.toBeInstanceOf(BlobIntegrityError);
    expect(await store.stat(wrongKey)).toBeUndefined();
    expect(await store.stat(smallKey)).toBeUndefined();
  }, 30_000);

  test("small and empty blobs are one PutObject at complete()", async () => {
    sent.length = 0;
    const small = bytes(3000, 5);
    const key: BlobKey = { registry: "docker.io", digest: sha256(small) };
    const up = store.beginUpload(key, small.byteLength);
    await up.write(small.subarray(0, 1));
    await up.write(small.subarray(1));
    expect(sent).toEqual([]); // nothing sent before complete()
    await up.complete();
    await up.complete(); // repeated complete() is the same completion
    await up.abort(); // abort after complete leaves the object alone
    expect(sent).toEqual([{ op: "PutObject", size: 3000 }]);
    expect(await store.stat(key)).toEqual({ size: 3000 });
    expect(await readAll((await store.open(key)).body)).toEqual(small);

    const empty = new Uint8Array(0);
    const emptyKey: BlobKey = { registry: "docker.io", digest: sha256(empty) };
    const up0 = store.beginUpload(emptyKey, 0);
    await up0.complete();
    expect(await store.stat(emptyKey)).toEqual({ size: 0 });
    expect((await readAll((await store.open(emptyKey)).body)).byteLength).toBe(0);

    const missing: BlobKey = { registry: "docker.io", digest: sha256(bytes(10, 99)) };
    await expect(store.open(missing)).rejects.toBeInstanceOf(RemoteBlobNotFoundError);
  }, 30_000);

  test("list() yields ferry blobs only, page by page; delete() removes them and is idempotent", async () => {
    // Its own prefix, so the other tests' blobs do not matter.
    const listStore = new S3BlobStore({ ...config, prefix: "list-test/" }, { listPageSize: 2 });
    const blobs = [bytes(100, 21), bytes(200, 22), bytes(6 * MiB, 23)];
    const keys: BlobKey[] = blobs.map((b, i) => ({ registry: i ? "docker.io" : "ghcr.io", digest: sha256(b) }));
    for (const [i, b] of blobs.entries()) {
      const up = listStore.beginUpload(keys[i]!, b.byteLength);
      await writeUneven(up, b);
      await up.complete();
    }
    // A foreign object under the prefix is skipped.
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: "list-test/blobs/README", Body: "hi" }));
    const listed = new Map<string, { size: number; lastModified: Date }>();
    for await (const { key, size, lastModified } of listStore.list()) listed.set(`${key.registry} ${key.digest}`, { size, lastModified });
    expect([...listed.keys()].sort()).toEqual(keys.map((k) => `${k.registry} ${k.digest}`).sort());
    for (const [i, k] of keys.entries()) {
      const entry = listed.get(`${k.registry} ${k.digest}`)!;
      expect(entry.size).toBe(blobs[i]!.byteLength);
      expect(Math.abs(Date.now() - entry.lastModified.getTime())).toBeLessThan(10 * 60_000);
    }

    await listStore.delete(keys[2]!);
    await listStore.delete(keys[2]!); // deleting a missing blob is fine
    expect(await listStore.stat(keys[2]!)).toBeUndefined();
    const after: string[] = [];
    for await (const { key } of listStore.list()) after.push(key.digest);
    expect(after.sort()).toEqual([keys[0]!.digest, keys[1]!.digest].sort());
    expect(await s3.listKeys("list-test/")).toContain("list-test/blobs/README");
    listStore.client.destroy();
  }, 30_000);

  test("a killed store fails fast and works again after restart", async () => {
    const data = bytes(4096, 11);
    const key: BlobKey = { registry: "docker.io", digest: sha256(data) };
    const up = store.beginUpload(key);
    await up.write(data);
    await up.complete();

    await s3.killGateway();
    for (const op of [() => store.stat(key), () => store.open(key)]) {
      const t0 = performance.now();
      const err = await op().catch((e: unknown) => e);
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(RemoteStoreError);
      expect(ms).toBeLessThan(5_000);
      expect(String((err as Error).message)).not.toContain(s3.secretAccessKey);
      console.log(`store down: ${(err as Error).message} after ${Math.round(ms)} ms`);
    }
    // An upload against a dead store fails at complete() and abort() does not hang.
    const up2 = store.beginUpload({ registry: "docker.io", digest: sha256(bytes(10 * MiB, 12)) });
    const t0 = performance.now();
    const werr = await writeUneven(up2, bytes(10 * MiB, 12)).catch((e: unknown) => e);
    expect(werr).toBeInstanceOf(RemoteStoreError); // CreateMultipartUpload refused
    await up2.abort();
    expect(performance.now() - t0).toBeLessThan(5_000);

    const t1 = performance.now();
    await s3.startGateway();
    console.log(`radosgw restart ${Math.round(performance.now() - t1)} ms`);
    expect(await store.stat(key)).toEqual({ size: 4096 });
    expect(await readAll((await store.open(key)).body)).toEqual(data);
  }, 30_000);

  test("a hung store (SIGSTOP) fails within the request timeout; a stalled body errors", async () => {
    const key: BlobKey = { registry: "docker.io", digest: sha256(bytes(4096, 11)) };
    const small = store.beginUpload(key);
    await small.write(bytes(4096, 11));
    await small.complete();
    // A body that stops mid-way errors once its reader gives up on it (BlobDownload's stall
    // timer aborts the signal), instead of hanging.
    const data = bytes(20 * MiB, 13);
    const bodyKey: BlobKey = { registry: "docker.io", digest: sha256(data) };
    const up = store.beginUpload(bodyKey, data.byteLength);
    await writeUneven(up, data);
    await up.complete();
    const giveUp = new AbortController();
    let stall: Timer | undefined;
    const armStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => giveUp.abort(), 1500);
    };
    const reader = (await store.open(bodyKey, undefined, giveUp.signal)).body.getReader();
    let got = (await reader.read()).value?.byteLength ?? 0;
    s3.freezeGateway();
    const t0 = performance.now();
    armStall();
    const readErr = await (async () => {
      for (let i = 0; i < 100_000; i++) {
        const { done, value } = await reader.read();
        if (done) return undefined;
        got += value.byteLength;
        armStall();
      }
    })().catch((e: unknown) => e);
    clearTimeout(stall);
    const stalledMs = performance.now() - t0;
    s3.thawGateway();
    console.log(`stalled body: ${String(readErr)} after ${got} bytes, ${Math.round(stalledMs)} ms`);
    expect(readErr).toBeInstanceOf(Error);
    expect(got).toBeLessThan(data.byteLength);
    expect(stalledMs).toBeLessThan(5_000);

    s3.freezeGateway();
    try {
      const t0 = performance.now();
      const err = await store.stat(key).catch((e: unknown) => e);
      const ms = performance.now() - t0;
      console.log(`store hung: ${(err as Error).message} after ${Math.round(ms)} ms`);
      expect(err).toBeInstanceOf(RemoteStoreError);
      expect(ms).toBeLessThan(5_000); // 2 attempts × 1.5 s + backoff
    } finally {
      s3.thawGateway();
    }
    expect(await store.stat(key)).toEqual({ size: 4096 });
  }, 30_000);
});

describe("redis harness", () => {
  /** One PING on a fresh client that does not retry, so a dead server fails fast. */
  async function ping(url: string): Promise<string> {
    const client = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    client.on("error", () => {}); // the rejection below reports it
    try {
      await client.connect();
      return await client.ping();
    } finally {
      client.disconnect();
    }
  }

  test("start, PING, restart (same port, data gone), kill, start", async () => {
    const redis = await startRedis();
    try {
      expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
      expect(await ping(redis.url)).toBe("PONG");
      const c = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      await c.set("k", "v");
      expect(await c.get("k")).toBe("v");
      c.disconnect();

      const before = redis.pid;
      const t0 = performance.now();
      await redis.restart();
      console.log(`redis restart ${Math.round(performance.now() - t0)} ms`);
      expect(redis.pid).not.toBe(before);
      const c2 = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      expect(await c2.get("k")).toBeNull(); // save "" + appendonly no: nothing survives
      c2.disconnect();

      const pid = redis.pid;
      await redis.kill();
      expect(pidAlive(pid)).toBe(false);
      await expect(ping(redis.url)).rejects.toThrow();
      await redis.start();
      await waitFor(() => ping(redis.url).then((r) => r === "PONG"), { timeoutMs: 5000, what: "PONG after start" });
    } finally {
      await redis.dispose();
    }
  }, 30_000);
});
