// The shared blob tier on S3 (or anything speaking its API: MinIO, R2, Ceph RGW…).
//
// Guarantees:
// - An object appears only when RemoteUpload.complete() succeeds, and only after the
//   bytes written hash to the key's digest (and match expectedSize): small blobs are one
//   PutObject at complete() time, larger ones a multipart upload that is completed there
//   and nowhere else. abort() or any failure aborts the multipart upload.
// - Memory per upload is bounded: the part being filled plus `queueSize` parts in flight.
// - A dead or hung store fails fast: short connect/request timeouts and few attempts, so
//   ferry falls back to other tiers instead of hanging on the shared one.
// - Error messages carry the operation, object key, error name and HTTP status only.

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { S3Settings } from "../config/config.ts";
import { digestHasher, parseDigest, type Digest } from "../protocol/digest.ts";
import { BlobIntegrityError, type BlobKey } from "./blob-store.ts";
import { RemoteBlobNotFoundError, RemoteStoreError, type RemoteBlobStore, type RemoteUpload } from "./remote-blob-store.ts";

/** The [s3] settings the store itself uses (prefix: e.g. "ferry/"; publicBaseUrl: a CDN in front of the bucket). */
export type S3Config = Omit<S3Settings, "redirect" | "redirectTtlSeconds">;

/** Tuning; the defaults suit a store on the same network or a cloud region. */
export interface S3StoreOptions {
  /** TCP connect budget (default 2 s). */
  connectTimeoutMs?: number;
  /** Budget until response headers for metadata calls: Head, Get, List, Delete, Create (default 5 s). */
  requestTimeoutMs?: number;
  /** Budget for calls that carry or assemble data: UploadPart, PutObject, Complete (default 120 s). */
  transferTimeoutMs?: number;
  /** A response body idle this long is failed, so a stalled GetObject stream errors (default 30 s). */
  socketIdleTimeoutMs?: number;
  /** Attempts per call, including the first (default 2: one retry). */
  maxAttempts?: number;
  /** Multipart part size (default 8 MiB, at least 5 MiB; raised to fit 10,000 parts when the size is known). */
  partSize?: number;
  /** Parts uploading at once per upload; write() waits beyond that (default 2). */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (default 1000, S3's maximum). */
  listPageSize?: number;
  /** Use this client instead of building one (tests, shared agents). */
  client?: S3Client;
}

const MiB = 1024 * 1024;
const MIN_PART = 5 * MiB; // S3's minimum for every part but the last
const MAX_PARTS = 10_000;
const MAX_PRESIGN_TTL = 604_800; // SigV4 presigned URLs live at most 7 days
const IMMUTABLE = "public, max-age=31536000, immutable"; // content-addressed: a CDN may cache forever
const LIST_PAGE_LIMIT = 1_000_000; // pages; a guard against a server repeating a token forever

const REGISTRY_RE = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/;
const PREFIX_RE = /^(?:[A-Za-z0-9._-]+\/)*$/;
const OBJECT_KEY_RE = /^blobs\/([a-z0-9.-]+(?:_\d{1,5})?)\/(sha256|sha512)\/([a-f0-9]{2})\/([a-f0-9]+)$/;

/** `${prefix}blobs/<registry with ":" → "_">/<alg>/<hex[0:2]>/<hex>`; throws on an unsafe key. */
export function objectKeyFor(prefix: string, key: BlobKey): string {
  const digest = parseDigest(key.digest);
  if (!digest || !REGISTRY_RE.test(key.registry) || key.registry.includes("..")) {
    throw new Error(`invalid blob key: registry ${JSON.stringify(key.registry)}, digest ${JSON.stringify(key.digest)}`);
  }
  return `${prefix}blobs/${key.registry.replace(":", "_")}/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
}

/** Inverse of objectKeyFor; undefined for keys that are not ferry blobs. */
export function parseObjectKey(prefix: string, objectKey: string): BlobKey | undefined {
  if (!objectKey.startsWith(prefix)) return undefined;
  const m = OBJECT_KEY_RE.exec(objectKey.slice(prefix.length));
  if (!m) return undefined;
  const [, reg, alg, shard, hex] = m as unknown as [string, string, string, string, string];
  const key = { registry: reg.replace("_", ":"), digest: `${alg}:${hex}` };
  if (!hex.startsWith(shard) || !parseDigest(key.digest) || !REGISTRY_RE.test(key.registry) || key.registry.includes("..")) {
    return undefined;
  }
  return key;
}

/** The SDK error reduced to safe fields (see RemoteStoreError). */
function storeError(operation: string, objectKey: string, error: unknown): RemoteStoreError {
  const e = error as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const name = e?.name && e.name !== "Error" ? e.name : (e?.code ?? "Error");
  const detail = String(e?.message ?? error).slice(0, 300);
  return new RemoteStoreError(operation, objectKey, name, e?.$metadata?.httpStatusCode, detail);
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export class S3BlobStore implements RemoteBlobStore {
  /** The SDK client (exposed for health checks and tests). */
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly publicBaseUrl?: string;
  private readonly transferTimeoutMs: number;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number;

  constructor(config: S3Config, options: S3StoreOptions = {}) {
    if (!config.bucket) throw new Error("s3: bucket is required");
    if (!PREFIX_RE.test(config.prefix)) throw new Error(`s3: prefix must be "" or end with "/" (got ${JSON.stringify(config.prefix)})`);
    if (Boolean(config.accessKeyId) !== Boolean(config.secretAccessKey)) {
      throw new Error("s3: set both access key id and secret access key, or neither (to use the default credential chain)");
    }
    if (config.publicBaseUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(config.publicBaseUrl)) {
      throw new Error("s3: publicBaseUrl must be an http(s) URL");
    }
    this.bucket = config.bucket;
    this.prefix = config.prefix;
    this.publicBaseUrl = config.publicBaseUrl?.replace(/\/+$/, "");
    this.transferTimeoutMs = options.transferTimeoutMs ?? 120_000;
    this.partSize = Math.max(MIN_PART, options.partSize ?? 8 * MiB);
    this.queueSize = Math.max(1, options.queueSize ?? 2);
    this.listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    this.client =
      options.client ??
      new S3Client({
        endpoint: config.endpoint,
        region: config.region,
        forcePathStyle: config.forcePathStyle,
        credentials:
          config.accessKeyId && config.secretAccessKey
            ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
            : undefined, // default chain: env, profile, IMDS/ECS roles
        maxAttempts: options.maxAttempts ?? 2,
        // The SDK's default (since 2025) adds CRC32 checksums, as aws-chunked trailers on
        // streamed bodies, which many S3-compatible servers reject or store verbatim.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        requestHandler: {
          connectionTimeout: options.connectTimeoutMs ?? 2_000,
          // Time to response headers; without throwOnRequestTimeout it only logs a warning.
          requestTimeout: options.requestTimeoutMs ?? 5_000,
          throwOnRequestTimeout: true,
          socketTimeout: options.socketIdleTimeoutMs ?? 30_000,
        },
      });
  }

  objectKey(key: BlobKey): string {
    return objectKeyFor(this.prefix, key);
  }

  async stat(key: BlobKey): Promise<{ size: number } | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      const size = Number(out.ContentLength);
      if (!Number.isSafeInteger(size) || size < 0) throw new Error(`no usable Content-Length (${out.ContentLength})`);
      return { size };
    } catch (error) {
      if (httpStatus(error) === 404) return undefined;
      throw storeError("HeadObject", objectKey, error);
    }
  }

  async open(key: BlobKey, range?: { start: number; end: number }): Promise<{ body: ReadableStream<Uint8Array>; size?: number }> {
    const objectKey = this.objectKey(key);
    if (range && !(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)) {
      throw new RangeError(`invalid range ${range.start}-${range.end}`);
    }
    let out;
    try {
      out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: objectKey, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
    } catch (error) {
      const status = httpStatus(error);
      if (status === 404) throw new RemoteBlobNotFoundError(objectKey);
      throw storeError("GetObject", objectKey, error);
    }
    const body = out.Body;
    if (!body) throw storeError("GetObject", objectKey, new Error("response has no body"));
    // A server that ignored Range would send the whole object: never pass that off as the slice.
    if (range && !out.ContentRange?.startsWith(`bytes ${range.start}-`)) {
      await body.transformToWebStream().cancel().catch(() => {});
      throw storeError("GetObject", objectKey, new Error(`asked for bytes ${range.start}-${range.end}, got Content-Range ${out.ContentRange ?? "(none)"}`));
    }
    // The object's total size as this response states it (Content-Range total, or length).
    const total = range ? Number(out.ContentRange?.split("/")[1]) : out.ContentLength;
    return { body: body.transformToWebStream() as ReadableStream<Uint8Array>, size: Number.isSafeInteger(total) ? total : undefined };
  }

  async publicUrl(key: BlobKey, ttlSeconds: number): Promise<string> {
    const objectKey = this.objectKey(key);
    if (this.publicBaseUrl) return `${this.publicBaseUrl}/${objectKey}`;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_PRESIGN_TTL) {
      throw new RangeError(`presigned URL ttl must be 1..${MAX_PRESIGN_TTL} s (got ${ttlSeconds})`);
    }
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }), { expiresIn: ttlSeconds });
    } catch (error) {
      throw storeError("presign GetObject", objectKey, error);
    }
  }

  beginUpload(key: BlobKey, expectedSize?: number): RemoteUpload {
    const digest = parseDigest(key.digest);
    const objectKey = this.objectKey(key); // validates the key
    if (!digest) throw new Error(`invalid digest ${key.digest}`);
    if (expectedSize !== undefined && !(Number.isSafeInteger(expectedSize) && expectedSize >= 0)) {
      throw new RangeError(`invalid expected size ${expectedSize}`);
    }
    // Grow parts when needed so the blob fits S3's 10,000-part limit (in whole MiB).
    const partSize =
      expectedSize === undefined ? this.partSize : Math.max(this.partSize, Math.ceil(expectedSize / MAX_PARTS / MiB) * MiB);
    return new S3Upload(this, objectKey, digest, expectedSize, partSize, this.queueSize);
  }

  async *list(): AsyncIterable<{ key: BlobKey; size: number; lastModified: Date }> {
    const listPrefix = `${this.prefix}blobs/`;
    let token: string | undefined;
    for (let page = 0; page < LIST_PAGE_LIMIT; page++) {
      let out;
      try {
        out = await this.client.send(new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: listPrefix,
            ContinuationToken: token,
            MaxKeys: this.listPageSize,
          }));
      } catch (error) {
        throw storeError("ListObjectsV2", listPrefix, error);
      }
      for (const o of out.Contents ?? []) {
        const key = o.Key === undefined ? undefined : parseObjectKey(this.prefix, o.Key);
        if (!key) continue; // not a ferry blob: leave it alone
        yield { key, size: Number(o.Size ?? 0), lastModified: o.LastModified ?? new Date(0) };
      }
      const next = out.IsTruncated ? out.NextContinuationToken : undefined;
      if (!next) return;
      if (next === token) throw storeError("ListObjectsV2", listPrefix, new Error("server repeated its continuation token"));
      token = next;
    }
  }

  async delete(key: BlobKey): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (error) {
      if (httpStatus(error) === 404) return;
      throw storeError("DeleteObject", objectKey, error);
    }
  }

  // --- used by S3Upload -------------------------------------------------------------

  /** @internal Runs a data-carrying call with the longer transfer budget; errors become RemoteStoreError. */
  transfer<T>(operation: string, objectKey: string, run: (client: S3Client, opts: { requestTimeout: number }) => Promise<T>): Promise<T> {
    return run(this.client, { requestTimeout: this.transferTimeoutMs }).catch((error: unknown) => {
      throw storeError(operation, objectKey, error);
    });
  }

  /** @internal */
  get bucketName(): string {
    return this.bucket;
  }
}

type UploadState = "open" | "completing" | "completed" | "aborted";

/**
 * One blob upload. Bytes are hashed and buffered; every full part is uploaded in the
 * background (at most queueSize at once). Nothing is visible until complete().
 */
class S3Upload implements RemoteUpload {
  private state: UploadState = "open";
  private readonly hasher: Bun.CryptoHasher;
  private total = 0;
  /** Copied chunks not yet in a part (less than partSize bytes). */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private created: Promise<string> | undefined; // CreateMultipartUpload → UploadId
  private nextPart = 1;
  private readonly parts: CompletedPart[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | undefined; // first background failure, rethrown by write/complete
  private tail: Promise<unknown> = Promise.resolve(); // serializes write()/complete()
  private aborting: Promise<void> | undefined;
  private completing: Promise<void> | undefined;

  constructor(
    private readonly store: S3BlobStore,
    private readonly objectKey: string,
    private readonly digest: Digest,
    private readonly expectedSize: number | undefined,
    private readonly partSize: number,
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
      // Copy: the caller may reuse its buffer once we resolve.
      this.pending.push(chunk.slice());
      this.pendingBytes += chunk.byteLength;
      while (this.pendingBytes >= this.partSize) {
        await this.uploadPart(this.takePending(this.partSize));
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
    this.pending = [];
    this.pendingBytes = 0;
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
        const body = this.takePending(this.pendingBytes);
        this.checkNotAborted();
        const put = new PutObjectCommand({
          Bucket: this.store.bucketName,
          Key: this.objectKey,
          Body: body,
          ContentLength: body.byteLength,
          ContentType: "application/octet-stream",
          CacheControl: IMMUTABLE,
        });
        await this.store.transfer("PutObject", this.objectKey, (c, o) => c.send(put, o));
      } else {
        if (this.pendingBytes > 0 || this.parts.length + this.inflight.size === 0) {
          await this.uploadPart(this.takePending(this.pendingBytes));
        }
        await Promise.all([...this.inflight]);
        if (this.failure) throw this.failure;
        const uploadId = await this.created;
        this.checkNotAborted();
        const parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
        const done = new CompleteMultipartUploadCommand({
          Bucket: this.store.bucketName,
          Key: this.objectKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        });
        await this.store.transfer("CompleteMultipartUpload", this.objectKey, (c, o) => c.send(done, o));
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
    this.checkNotAborted(); // abort() may have run while we waited
    if (this.failure) throw this.failure;
    const partNumber = this.nextPart++;
    if (partNumber > MAX_PARTS) throw new Error(`blob too large for ${MAX_PARTS} parts of ${this.partSize} bytes`);
    const command = new UploadPartCommand({
      Bucket: this.store.bucketName,
      Key: this.objectKey,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: body,
      ContentLength: body.byteLength,
    });
    const task: Promise<void> = this.store
      .transfer("UploadPart", this.objectKey, (c, o) => c.send(command, o))
      .then((out) => {
        if (!out.ETag) throw new Error(`UploadPart ${partNumber} returned no ETag`);
        this.parts.push({ PartNumber: partNumber, ETag: out.ETag });
      })
      .catch((error: unknown) => {
        this.failure ??= error as Error;
      })
      .finally(() => this.inflight.delete(task));
    this.inflight.add(task);
    // Backpressure: hold the writer while the queue is full.
    while (this.inflight.size >= this.queueSize) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
  }

  private ensureCreated(): Promise<string> {
    if (!this.created) {
      const command = new CreateMultipartUploadCommand({
        Bucket: this.store.bucketName,
        Key: this.objectKey,
        ContentType: "application/octet-stream",
        CacheControl: IMMUTABLE,
      });
      this.created = this.store
        .transfer("CreateMultipartUpload", this.objectKey, (c, o) => c.send(command, o))
        .then((out) => {
          if (!out.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
          return out.UploadId;
        });
    }
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
      const command = new AbortMultipartUploadCommand({ Bucket: this.store.bucketName, Key: this.objectKey, UploadId: uploadId });
      await this.store.transfer("AbortMultipartUpload", this.objectKey, (c, o) => c.send(command, o));
    } catch (error) {
      if ((error as RemoteStoreError).httpStatus === 404) return; // already gone
      throw error;
    }
  }

  /** Removes and concatenates the first `n` pending bytes. */
  private takePending(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.pending[0]!;
      const take = Math.min(head.byteLength, n - filled);
      out.set(take === head.byteLength ? head : head.subarray(0, take), filled);
      filled += take;
      if (take === head.byteLength) this.pending.shift();
      else this.pending[0] = head.subarray(take);
    }
    this.pendingBytes -= n;
    return out;
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
    if (this.state === "aborted") throw new Error(`upload of ${this.objectKey} was aborted`);
    if (this.state !== "open") throw new Error(`upload of ${this.objectKey} is already ${this.state}`);
    if (this.failure) throw this.failure;
  }

  private checkNotAborted(): void {
    if (this.state === "aborted") throw new Error(`upload of ${this.objectKey} was aborted`);
  }
}
