// One blob upload to S3, as a state machine over five calls (Create, UploadPart,
// Complete, Abort, Put) that S3BlobStore makes with the SDK. Bytes are hashed and
// copied into the part being filled; every full part is uploaded in the background (at
// most queueSize at once), and its buffer is filled again once the part is stored.
// Nothing is visible until complete(), and complete() publishes only after the bytes
// hash to the digest (and match expectedSize): a blob that fits one part is one
// PutObject then, a larger one a multipart upload completed there and nowhere else.
// Any failure, and abort(), aborts the multipart upload.
//
// @aws-sdk/lib-storage's Upload is not used: it completes as soon as its body ends (no
// place to verify first) and keeps one part size, so a blob of unknown size could not
// pass 10,000 parts.

import { digestHasher, type Digest } from "../protocol/digest.ts";
import { BlobIntegrityError } from "./blob-store.ts";
import type { RemoteStoreError, RemoteUpload } from "./remote-blob-store.ts";
import { countChunkGarbage } from "../shared/chunk-garbage.ts";

const MiB = 1024 * 1024;
/** S3's minimum for every part but the last. */
export const MIN_PART_SIZE = 5 * MiB;
/** S3's maximum part size. */
export const MAX_PART_SIZE = 5 * 1024 * MiB;
/** S3's limit on parts per upload. */
export const MAX_PARTS = 10_000;

/** The S3 calls of one object's upload (errors are RemoteStoreError; 404 carries httpStatus). */
export interface UploadCalls {
  /** CreateMultipartUpload → UploadId. */
  create(): Promise<string>;
  /** UploadPart → ETag. */
  uploadPart(uploadId: string, partNumber: number, body: Uint8Array): Promise<string>;
  complete(uploadId: string, parts: { PartNumber: number; ETag: string }[]): Promise<void>;
  abort(uploadId: string): Promise<void>;
  /** PutObject of the whole blob. */
  put(body: Uint8Array): Promise<void>;
}

/**
 * How big each part is. With the blob's size known, one size that keeps the upload within
 * maxParts (whole MiB, at least `base`). Unknown, parts start at `base` and double every
 * tenth of maxParts (S3 lets every part but the last differ), so 10,000 parts of an 8 MiB
 * base hold ~7.8 TiB, past S3's 5 TiB object limit, while a small blob still buffers 8 MiB.
 */
export class PartSizes {
  private readonly fixed: number | undefined;
  private readonly growEvery: number;

  constructor(
    private readonly base: number,
    expectedSize: number | undefined,
    readonly maxParts: number = MAX_PARTS,
  ) {
    if (!(Number.isSafeInteger(base) && base >= MIN_PART_SIZE && base <= MAX_PART_SIZE)) throw new RangeError(`part size must be ${MIN_PART_SIZE}..${MAX_PART_SIZE} bytes (got ${base})`);
    if (!(Number.isSafeInteger(maxParts) && maxParts >= 1 && maxParts <= MAX_PARTS)) throw new RangeError(`max parts must be 1..${MAX_PARTS} (got ${maxParts})`);
    this.growEvery = Math.max(1, Math.floor(maxParts / 10));
    if (expectedSize !== undefined) {
      const fixed = Math.max(base, Math.ceil(expectedSize / maxParts / MiB) * MiB);
      if (fixed > MAX_PART_SIZE) throw new RangeError(`a blob of ${expectedSize} bytes does not fit ${maxParts} parts of at most ${MAX_PART_SIZE} bytes`);
      this.fixed = fixed;
    }
  }

  /** Size of part `partNumber` (1-based). */
  of(partNumber: number): number {
    return this.fixed ?? Math.min(MAX_PART_SIZE, this.base * 2 ** Math.floor((partNumber - 1) / this.growEvery));
  }
}

type UploadState = "open" | "completing" | "completed" | "aborted";

export class S3Upload implements RemoteUpload {
  private state: UploadState = "open";
  private readonly hasher: Bun.CryptoHasher;
  private total = 0;
  /** The part being filled (fewer bytes than its size): `pendingBytes` of `part` hold data. */
  private part: Uint8Array | undefined;
  private pendingBytes = 0;
  /** Buffers of stored parts, to be filled again (a fresh 8 MiB part per part left up to
   * ~150 MiB of garbage over a 300 MiB blob before the collector ran; bench/ scenario 8). */
  private spare: Uint8Array[] = [];
  private created: Promise<string> | undefined; // CreateMultipartUpload → UploadId
  private nextPart = 1;
  private readonly parts: { PartNumber: number; ETag: string }[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | undefined; // first background failure, rethrown by write/complete
  private tail: Promise<unknown> = Promise.resolve(); // serializes write()/complete()
  private aborting: Promise<void> | undefined;
  private completing: Promise<void> | undefined;

  constructor(
    private readonly calls: UploadCalls,
    private readonly objectKey: string,
    private readonly digest: Digest,
    private readonly expectedSize: number | undefined,
    private readonly partSizes: PartSizes,
    private readonly queueSize: number,
  ) {
    this.hasher = digestHasher(digest.algorithm);
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      if (this.expectedSize !== undefined && this.total + chunk.byteLength > this.expectedSize) {
        throw new BlobIntegrityError(this.digest.text, "(unknown)", this.expectedSize, this.total + chunk.byteLength);
      }
      if (chunk.byteLength === 0) return;
      this.hasher.update(chunk);
      this.total += chunk.byteLength;
      // Copied: the caller may reuse its buffer once we resolve.
      const placedBefore = this.total - chunk.byteLength;
      for (let at = 0; at < chunk.byteLength; ) {
        const full = this.partSizes.of(this.nextPart);
        // A blob's last part (or a small blob) gets a buffer of what is left, not a whole part.
        const part = (this.part ??= this.partBuffer(Math.min(full, (this.expectedSize ?? Infinity) - (placedBefore + at))));
        const take = Math.min(chunk.byteLength - at, part.byteLength - this.pendingBytes);
        part.set(chunk.subarray(at, at + take), this.pendingBytes);
        this.pendingBytes += take;
        at += take;
        if (this.pendingBytes === full) await this.uploadPart(this.takePart());
      }
    });
  }

  complete(): Promise<void> {
    this.completing ??= this.serial(() => this.finish());
    return this.completing;
  }

  abort(): Promise<void> {
    if (this.state === "completed") return Promise.resolve(); // the object exists: not ours to remove
    this.state = "aborted";
    this.part = undefined;
    this.pendingBytes = 0;
    this.spare = [];
    this.aborting ??= this.abortRemote().catch((error: unknown) => {
      this.aborting = undefined; // let a later abort() try again
      throw error;
    });
    return this.aborting;
  }

  // ---------------------------------------------------------------------------------

  private async finish(): Promise<void> {
    this.assertOpen();
    this.state = "completing";
    try {
      if (this.expectedSize !== undefined && this.total !== this.expectedSize) {
        throw new BlobIntegrityError(this.digest.text, "(unknown)", this.expectedSize, this.total);
      }
      const actual = `${this.digest.algorithm}:${this.hasher.digest("hex")}`;
      if (actual !== this.digest.text) throw new BlobIntegrityError(this.digest.text, actual);

      if (!this.created) {
        // Everything fits in one part: a single PutObject, atomic by nature.
        const body = this.takePart();
        this.checkNotAborted();
        await this.calls.put(body);
      } else {
        if (this.pendingBytes > 0 || this.parts.length + this.inflight.size === 0) {
          await this.uploadPart(this.takePart());
        }
        await Promise.all([...this.inflight]);
        if (this.failure) throw this.failure;
        const uploadId = await this.created;
        this.checkNotAborted();
        await this.calls.complete(uploadId, [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber));
      }
      this.state = "completed";
    } catch (error) {
      if (this.state !== "completed") await this.abort().catch(() => {});
      throw error;
    }
  }

  /** Starts uploading one part; returns once fewer than queueSize parts are in flight. */
  private async uploadPart(body: Uint8Array): Promise<void> {
    const uploadId = await this.ensureCreated();
    if (this.failure) throw this.failure;
    this.checkNotAborted(); // abort() may have run while we waited
    const partNumber = this.nextPart++;
    if (partNumber > this.partSizes.maxParts) throw new Error(`blob too large for ${this.partSizes.maxParts} parts (${this.total} bytes so far)`);
    const task: Promise<void> = this.calls
      .uploadPart(uploadId, partNumber, body)
      .then((etag) => {
        if (!etag) throw new Error(`UploadPart ${partNumber} returned no ETag`);
        this.parts.push({ PartNumber: partNumber, ETag: etag });
        // The SDK is done with the body once the part is stored; a resent part is sent from it.
        if (this.state === "open" && body.byteLength === body.buffer.byteLength && this.spare.length < this.queueSize) this.spare.push(new Uint8Array(body.buffer));
      })
      .finally(() => countChunkGarbage(body.byteLength)) // the HTTP client's copy of the part
      .catch((error: unknown) => {
        this.failure ??= error as Error;
        void this.abort().catch(() => {}); // the writer may never come back to do it
      })
      .finally(() => this.inflight.delete(task));
    this.inflight.add(task);
    // Backpressure: hold the writer while the queue is full.
    while (this.inflight.size >= this.queueSize) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
  }

  private ensureCreated(): Promise<string> {
    this.created ??= this.calls.create().then((uploadId) => {
      if (!uploadId) throw new Error("CreateMultipartUpload returned no UploadId");
      return uploadId;
    });
    return this.created;
  }

  private async abortRemote(): Promise<void> {
    if (!this.created) return;
    let uploadId: string;
    try {
      uploadId = await this.created;
    } catch {
      return; // never created: nothing to abort
    }
    // Let in-flight parts settle first: a part landing after the abort would linger.
    await Promise.allSettled([...this.inflight]);
    try {
      await this.calls.abort(uploadId);
    } catch (error) {
      if ((error as RemoteStoreError).httpStatus === 404) return; // already gone
      throw error;
    }
  }

  /** The filled bytes of the current part (maybe none), which starts a new part. */
  private takePart(): Uint8Array {
    const body = (this.part ?? new Uint8Array(0)).subarray(0, this.pendingBytes);
    this.part = undefined;
    this.pendingBytes = 0;
    return body;
  }

  /** A part buffer of `size` bytes: a stored part's, or a new one. */
  private partBuffer(size: number): Uint8Array {
    const i = this.spare.findIndex((b) => b.byteLength === size);
    if (i >= 0) return this.spare.splice(i, 1)[0]!;
    this.spare = []; // parts grew (unknown size): the smaller buffers are of no more use
    countChunkGarbage(size);
    return new Uint8Array(size);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure; // the cause, rather than the abort it led to
    if (this.state === "aborted") throw new Error(`upload of ${this.objectKey} was aborted`);
    if (this.state !== "open") throw new Error(`upload of ${this.objectKey} is already ${this.state}`);
  }

  private checkNotAborted(): void {
    if (this.state === "aborted") throw new Error(`upload of ${this.objectKey} was aborted`);
  }
}
