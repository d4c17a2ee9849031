// The S3 upload state machine (src/cache/s3-upload.ts) and its part-size policy, driven
// through a recording stand-in for the five S3 calls: what is sent, in which order, and
// that nothing is completed unless the bytes match. (The real S3 runs in
// test/e2e/s3-store.test.ts and s3-tier.test.ts, on Ceph's radosgw.)
import { describe, expect, test } from "bun:test";
import { BlobIntegrityError } from "../../src/cache/blob-store.ts";
import { RemoteStoreError } from "../../src/cache/remote-blob-store.ts";
import { MAX_PART_SIZE, MAX_PARTS, PartSizes, S3Upload, type UploadCalls } from "../../src/cache/s3-upload.ts";
import { parseDigest } from "../../src/protocol/digest.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const sha256 = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 997) out[i] = (i * seed) & 0xff;
  return out;
}

/** Records every call; `gate` holds UploadPart calls until released; `fail` makes one call fail. */
function fakeCalls(opts: { failPart?: number; failCreate?: boolean } = {}) {
  const log: string[] = [];
  const parts: { partNumber: number; size: number }[] = [];
  let completed: { PartNumber: number; ETag: string }[] | undefined;
  let held: (() => void)[] = [];
  let gated = false;
  const calls: UploadCalls = {
    async create() {
      log.push("create");
      if (opts.failCreate) throw new RemoteStoreError("CreateMultipartUpload", "k", "ECONNREFUSED", undefined, "down");
      return "upload-1";
    },
    async uploadPart(_id, partNumber, body) {
      log.push(`part ${partNumber}`);
      if (gated) await new Promise<void>((resolve) => held.push(resolve));
      if (partNumber === opts.failPart) throw new RemoteStoreError("UploadPart", "k", "InternalError", 500, "boom");
      parts.push({ partNumber, size: body.byteLength });
      return `"etag-${partNumber}"`;
    },
    async complete(_id, list) {
      log.push("complete");
      completed = list;
    },
    async abort() {
      log.push("abort");
    },
    async put(body) {
      log.push(`put ${body.byteLength}`);
    },
  };
  return {
    calls,
    log,
    parts,
    completed: () => completed,
    gate: () => (gated = true),
    release: () => {
      gated = false;
      const h = held;
      held = [];
      for (const r of h) r();
    },
    heldCount: () => held.length,
  };
}

function upload(calls: UploadCalls, data: Uint8Array, opts: { expectedSize?: number; base?: number; maxParts?: number; queue?: number; digestOf?: Uint8Array } = {}) {
  const digest = parseDigest(sha256(opts.digestOf ?? data))!;
  const sizes = new PartSizes(opts.base ?? 5 * MiB, opts.expectedSize, opts.maxParts);
  return new S3Upload(calls, "ferry/blobs/x", digest, opts.expectedSize, sizes, opts.queue ?? 2);
}

async function writeIn(up: S3Upload, data: Uint8Array, chunk = 1 * MiB + 3): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) await up.write(data.subarray(off, Math.min(data.length, off + chunk)));
}

describe("PartSizes", () => {
  test("known size: the base, grown in whole MiB so the blob fits 10,000 parts", () => {
    expect(new PartSizes(8 * MiB, 20 * MiB).of(1)).toBe(8 * MiB);
    expect(new PartSizes(8 * MiB, 0).of(1)).toBe(8 * MiB);
    // 8 MiB × 10,000 ≈ 78 GiB: past that, parts grow.
    expect(new PartSizes(8 * MiB, 100 * GiB).of(1)).toBe(11 * MiB);
    expect(new PartSizes(8 * MiB, 100 * GiB).of(9_999)).toBe(11 * MiB);
    const fiveTiB = 5 * 1024 * GiB;
    const p = new PartSizes(8 * MiB, fiveTiB);
    expect(p.of(1) * MAX_PARTS).toBeGreaterThanOrEqual(fiveTiB);
    expect(p.of(1) % MiB).toBe(0);
    expect(() => new PartSizes(8 * MiB, MAX_PART_SIZE * MAX_PARTS + 1)).toThrow(RangeError);
  });

  test("unknown size: the base, doubling every 1,000 parts, capped at 5 GiB; 10,000 parts hold past 5 TiB", () => {
    const p = new PartSizes(8 * MiB, undefined);
    expect([p.of(1), p.of(1000), p.of(1001), p.of(2001), p.of(10_000)]).toEqual([8 * MiB, 8 * MiB, 16 * MiB, 32 * MiB, 512 * 8 * MiB]);
    let total = 0;
    for (let n = 1; n <= MAX_PARTS; n++) total += p.of(n);
    expect(total).toBeGreaterThan(5 * 1024 * GiB);
    expect(new PartSizes(1 * GiB, undefined).of(10_000)).toBe(MAX_PART_SIZE);
    // A lower maxParts grows sooner (every tenth of it).
    const q = new PartSizes(5 * MiB, undefined, 4);
    expect([1, 2, 3, 4].map((n) => q.of(n))).toEqual([5 * MiB, 10 * MiB, 20 * MiB, 40 * MiB]);
  });

  test("a base under S3's 5 MiB minimum, or a part limit past 10,000, is refused", () => {
    expect(() => new PartSizes(4 * MiB, undefined)).toThrow(RangeError);
    expect(() => new PartSizes(8 * MiB, undefined, 10_001)).toThrow(RangeError);
  });
});

describe("S3Upload", () => {
  test("a blob under one part is a single PutObject at complete(), nothing before", async () => {
    const f = fakeCalls();
    const data = bytes(3 * MiB);
    const up = upload(f.calls, data, { expectedSize: data.length });
    await writeIn(up, data);
    expect(f.log).toEqual([]);
    await up.complete();
    await up.complete(); // the same completion
    await up.abort(); // after completion: leaves the object alone
    expect(f.log).toEqual([`put ${3 * MiB}`]);
  });

  test("a larger blob is uploaded in parts as they fill and completed once, with parts in order", async () => {
    const f = fakeCalls();
    const data = bytes(12 * MiB + 5);
    const up = upload(f.calls, data, { expectedSize: data.length });
    await writeIn(up, data);
    expect(f.log).toEqual(["create", "part 1", "part 2"]); // two full parts up, the tail still buffered
    expect(f.completed()).toBeUndefined();
    await up.complete();
    expect(f.log).toEqual(["create", "part 1", "part 2", "part 3", "complete"]);
    expect(f.parts.map((p) => p.size)).toEqual([5 * MiB, 5 * MiB, 2 * MiB + 5]);
    expect(f.completed()).toEqual([1, 2, 3].map((n) => ({ PartNumber: n, ETag: `"etag-${n}"` })));
  });

  test("bytes that hash to another digest are aborted, never completed", async () => {
    const f = fakeCalls();
    const data = bytes(11 * MiB);
    const up = upload(f.calls, data, { digestOf: bytes(10) });
    await writeIn(up, data);
    await expect(up.complete()).rejects.toBeInstanceOf(BlobIntegrityError);
    expect(f.log).toEqual(["create", "part 1", "part 2", "abort"]);
    await expect(up.write(bytes(1))).rejects.toThrow(/aborted/);
  });

  test("more or fewer bytes than announced: refused at write(), or at complete() with an abort", async () => {
    const f = fakeCalls();
    const data = bytes(1000);
    const over = upload(f.calls, data, { expectedSize: 999 });
    await expect(over.write(data)).rejects.toBeInstanceOf(BlobIntegrityError);
    const short = upload(f.calls, data, { expectedSize: 1001 });
    await short.write(data);
    await expect(short.complete()).rejects.toBeInstanceOf(BlobIntegrityError);
    expect(f.log).toEqual([]); // no multipart upload was ever created, nothing put
  });

  test("a failed part fails the upload and aborts it once the other parts settle", async () => {
    const f = fakeCalls({ failPart: 2 });
    const data = bytes(16 * MiB);
    const up = upload(f.calls, data, { queue: 4 });
    const err = await writeIn(up, data).then(() => up.complete()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteStoreError);
    expect(f.log).not.toContain("complete");
    expect(f.log.at(-1)).toBe("abort");
  });

  test("abort() during an upload waits for parts in flight, then aborts; later calls fail", async () => {
    const f = fakeCalls();
    const data = bytes(12 * MiB);
    const up = upload(f.calls, data, { queue: 4 });
    f.gate();
    await writeIn(up, data); // queue of 4: the writer is not held by two parts in flight
    expect(f.heldCount()).toBe(2);
    const aborted = up.abort();
    await Bun.sleep(0);
    expect(f.log).not.toContain("abort"); // a part landing after the abort would linger
    f.release();
    await aborted;
    await up.abort(); // idempotent
    expect(f.log.filter((l) => l === "abort")).toHaveLength(1);
    await expect(up.complete()).rejects.toThrow(/aborted/);
    expect(f.log).not.toContain("complete");
  });

  test("backpressure: write() waits while queueSize parts are in flight", async () => {
    const f = fakeCalls();
    const data = bytes(10 * MiB);
    const up = upload(f.calls, data, { queue: 1 });
    f.gate();
    let resolved = false;
    const w = up.write(data.subarray(0, 5 * MiB)).then(() => (resolved = true));
    for (let i = 0; i < 10 && f.heldCount() === 0; i++) await Bun.sleep(1);
    expect(f.heldCount()).toBe(1);
    expect(resolved).toBe(false);
    f.release();
    await w;
    expect(resolved).toBe(true);
    await up.write(data.subarray(5 * MiB));
    await up.complete();
    expect(f.log).toEqual(["create", "part 1", "part 2", "complete"]);
  });

  test("a store that refuses CreateMultipartUpload fails write(); abort() has nothing to abort", async () => {
    const f = fakeCalls({ failCreate: true });
    const data = bytes(6 * MiB);
    const up = upload(f.calls, data);
    await expect(writeIn(up, data)).rejects.toBeInstanceOf(RemoteStoreError);
    await up.abort();
    expect(f.log).toEqual(["create"]);
  });

  test("part buffers are filled again once their part is stored: queueSize + 1 buffers for 13 parts, each part's bytes intact", async () => {
    const data = bytes(60 * MiB + 7, 5);
    const buffers = new Set<ArrayBufferLike>();
    const received: Uint8Array[] = [];
    const f = fakeCalls();
    const calls: UploadCalls = {
      ...f.calls,
      async uploadPart(id, partNumber, body) {
        buffers.add(body.buffer);
        await Bun.sleep(0); // stored a turn later, as S3 answers after the whole body
        received[partNumber - 1] = body.slice(); // what S3 stored: the body when it answers
        return f.calls.uploadPart(id, partNumber, body);
      },
    };
    const up = upload(calls, data, { expectedSize: data.length, queue: 2 });
    await writeIn(up, data, 64 * 1024 + 1);
    await up.complete();
    expect(f.parts.length).toBe(13);
    expect(buffers.size).toBeLessThanOrEqual(3);
    expect(sha256(Buffer.concat(received))).toBe(sha256(data));

    // A blob under one part holds a buffer of its own size, not a whole part's.
    let putBuffer = 0;
    const small = bytes(3000, 6);
    const s = upload({ ...f.calls, put: async (body) => void (putBuffer = body.buffer.byteLength) }, small, { expectedSize: small.length });
    await writeIn(s, small, 1000);
    await s.complete();
    expect(putBuffer).toBe(3000);
  });

  test("unknown size: parts grow as the upload proceeds; past maxParts the upload fails and is aborted", async () => {
    const f = fakeCalls();
    const data = bytes(40 * MiB);
    const up = upload(f.calls, data, { maxParts: 4 });
    await writeIn(up, data, 3 * MiB);
    await up.complete();
    expect(f.parts.map((p) => p.size / MiB)).toEqual([5, 10, 20, 5]);
    const g = fakeCalls();
    const big = bytes(80 * MiB);
    const tooBig = upload(g.calls, big, { maxParts: 4 });
    const err = await writeIn(tooBig, big, 3 * MiB).then(() => tooBig.complete()).catch((e: unknown) => e);
    expect(String(err)).toContain("too large for 4 parts");
    await tooBig.abort();
    expect(g.log).not.toContain("complete");
    expect(g.log).toContain("abort");
  });
});
