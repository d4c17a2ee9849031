// The shared blob tier on S3 (or anything speaking its API: MinIO, R2, Ceph RGW…).
//
// Guarantees:
// - An object appears only when RemoteUpload.complete() succeeds, and only after the
//   bytes written hash to the key's digest (and match expectedSize); the upload's state
//   machine and part sizes are in s3-upload.ts. abort() or any failure aborts it.
// - Memory per upload is bounded: the part being filled plus `queueSize` parts in flight.
// - A dead or hung store fails fast: short connect/request timeouts and few attempts, so
//   ferry falls back to other tiers instead of hanging on the shared one. A GetObject body
//   that stalls is failed by its reader's signal (open()'s caller bounds silence).
// - Error messages carry the operation, object key, error name and HTTP status only.

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import type { S3Settings } from "../config/config.ts";
import { parseDigest } from "../protocol/digest.ts";
import type { BlobKey } from "./blob-store.ts";
import { RemoteBlobNotFoundError, RemoteStoreError, type RemoteBlobStore, type RemoteUpload } from "./remote-blob-store.ts";
import { MAX_PARTS, MIN_PART_SIZE, PartSizes, S3Upload, type UploadCalls } from "./s3-upload.ts";

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
  /** A socket idle this long fails a metadata call (default 30 s); GetObject bodies are bounded by open()'s signal, part uploads by transferTimeoutMs. */
  socketIdleTimeoutMs?: number;
  /** Attempts per call, including the first (default 2: one retry). */
  maxAttempts?: number;
  /** Multipart part size (default 8 MiB, at least 5 MiB; grown to fit maxParts, see PartSizes). */
  partSize?: number;
  /** Parts per upload (default 10,000, S3's limit; tests lower it to see parts grow with small blobs). */
  maxParts?: number;
  /** Parts uploading at once per upload; write() waits beyond that (default 2). */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (default 1000, S3's maximum). */
  listPageSize?: number;
  /** Use this client instead of building one, for every call (tests, shared agents). */
  client?: S3Client;
}

const MiB = 1024 * 1024;
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
  /**
   * GetObject goes through Bun's own fetch: its body is a native stream. The Node handler's
   * (IncomingMessage, then Readable.toWeb) held ~45 MiB more RSS over a 300 MiB body and
   * streamed at ~0.6× a plain GET of the object (bench/ scenario 8). UploadPart and PutObject
   * too: through the Node handler a cold pull that filled the S3 tier peaked ~23 MiB higher.
   * (Exposed for tests that watch what is sent.)
   */
  readonly bodyClient: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly publicBaseUrl?: string;
  private readonly transferTimeoutMs: number;
  private readonly partSize: number;
  private readonly maxParts: number;
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
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 8 * MiB);
    this.maxParts = options.maxParts ?? MAX_PARTS;
    this.queueSize = Math.max(1, options.queueSize ?? 2);
    this.listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    const shared = {
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
    } as const;
    this.client =
      options.client ??
      new S3Client({
        ...shared,
        requestHandler: {
          connectionTimeout: options.connectTimeoutMs ?? 2_000,
          // Time to response headers; without throwOnRequestTimeout it only logs a warning.
          requestTimeout: options.requestTimeoutMs ?? 5_000,
          throwOnRequestTimeout: true,
          socketTimeout: options.socketIdleTimeoutMs ?? 30_000,
        },
      });
    // requestTimeout: until response headers (connecting included), as above.
    this.bodyClient = options.client ?? new S3Client({ ...shared, requestHandler: new FetchHttpHandler({ requestTimeout: options.requestTimeoutMs ?? 5_000 }) });
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

  async open(key: BlobKey, range?: { start: number; end: number }, signal?: AbortSignal): Promise<{ body: ReadableStream<Uint8Array>; size?: number }> {
    const objectKey = this.objectKey(key);
    if (range && !(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)) {
      throw new RangeError(`invalid range ${range.start}-${range.end}`);
    }
    let out;
    try {
      out = await this.bodyClient.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: objectKey, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
        { abortSignal: signal },
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
    const partSizes = new PartSizes(this.partSize, expectedSize, this.maxParts);
    return new S3Upload(this.uploadCalls(objectKey), objectKey, digest, expectedSize, partSizes, this.queueSize);
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

  /** Multipart uploads under ferry's prefix that were neither completed nor aborted (a killed replica's). */
  async *uploads(): AsyncIterable<{ objectKey: string; uploadId: string; initiated: Date }> {
    const listPrefix = `${this.prefix}blobs/`;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (let page = 0; page < LIST_PAGE_LIMIT; page++) {
      let out;
      try {
        out = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: listPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: this.listPageSize }));
      } catch (error) {
        throw storeError("ListMultipartUploads", listPrefix, error);
      }
      for (const u of out.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || !parseObjectKey(this.prefix, u.Key)) continue; // not ferry's
        yield { objectKey: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) };
      }
      if (!out.IsTruncated) return;
      if (out.NextKeyMarker === keyMarker && out.NextUploadIdMarker === uploadIdMarker) {
        throw storeError("ListMultipartUploads", listPrefix, new Error("server repeated its markers"));
      }
      keyMarker = out.NextKeyMarker;
      uploadIdMarker = out.NextUploadIdMarker;
    }
  }

  /** Aborts one multipart upload (from uploads()); one already gone is fine. */
  async abortUpload(objectKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }));
    } catch (error) {
      if (httpStatus(error) === 404) return;
      throw storeError("AbortMultipartUpload", objectKey, error);
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

  /** The S3 calls of one object's upload; data-carrying ones get the longer transfer budget. */
  private uploadCalls(objectKey: string): UploadCalls {
    const [Bucket, Key, client, bodyClient] = [this.bucket, objectKey, this.client, this.bodyClient];
    const opts = { requestTimeout: this.transferTimeoutMs };
    const call = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
      try {
        return await run();
      } catch (error) {
        throw storeError(operation, objectKey, error);
      }
    };
    const object = { ContentType: "application/octet-stream", CacheControl: IMMUTABLE };
    return {
      create: () => call("CreateMultipartUpload", async () => (await client.send(new CreateMultipartUploadCommand({ Bucket, Key, ...object }), opts)).UploadId ?? ""),
      uploadPart: (UploadId, PartNumber, Body) =>
        call("UploadPart", async () => (await bodyClient.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: Body.byteLength }), opts)).ETag ?? ""),
      // The answer's ETag is not used: RGW, like many S3-compatible stores, sends it empty.
      complete: (UploadId, Parts) => call("CompleteMultipartUpload", async () => void (await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }), opts))),
      abort: (UploadId) => call("AbortMultipartUpload", async () => void (await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }), opts))),
      put: (Body) => call("PutObject", async () => void (await bodyClient.send(new PutObjectCommand({ Bucket, Key, Body, ContentLength: Body.byteLength, ...object }), opts))),
    };
  }
}
