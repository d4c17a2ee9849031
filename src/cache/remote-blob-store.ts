// The shared blob tier (S3-compatible) seen by every replica. A blob becomes visible
// there only when its upload is completed, which happens after the digest is verified.
import type { BlobKey } from "./blob-store.ts";

export interface RemoteBlobStore {
  /** Size of a complete blob in the shared store, or undefined. Errors (store down) throw. */
  stat(key: BlobKey): Promise<{ size: number } | undefined>;
  /**
   * Streams the blob, or bytes [start, end] inclusive, with the object's total size as the
   * response states it. Aborting `signal` fails the request and its body: a reader bounds a body's silence with it.
   */
  open(key: BlobKey, range?: { start: number; end: number }, signal?: AbortSignal): Promise<{ body: ReadableStream<Uint8Array>; size?: number }>;
  /** A short-lived URL a client can GET the blob from directly (presigned, or a CDN base URL). */
  publicUrl(key: BlobKey, ttlSeconds: number): Promise<string>;
  /** Starts a multipart upload that becomes visible ONLY when complete() is called. */
  beginUpload(key: BlobKey, expectedSize?: number): RemoteUpload;
  /** Blobs in the store, for pruning orphans. */
  list(): AsyncIterable<{ key: BlobKey; size: number; lastModified: Date }>;
  delete(key: BlobKey): Promise<void>;
}

export interface RemoteUpload {
  /** Appends bytes; parts upload in the background as they fill. Resolves when the chunk is accepted. */
  write(chunk: Uint8Array): Promise<void>;
  /** Finishes the last part and completes the upload: only now does the object exist. */
  complete(): Promise<void>;
  /** Aborts the upload; nothing becomes visible. Safe after errors and more than once. */
  abort(): Promise<void>;
}

/** open() on a blob that is not (or no longer) in the shared store, e.g. pruned after stat(). */
export class RemoteBlobNotFoundError extends Error {
  constructor(readonly objectKey: string) {
    super(`blob not in the shared store: ${objectKey}`);
    this.name = "RemoteBlobNotFoundError";
  }
}

/**
 * A failed call to the shared store. Carries only the operation, the object key, the
 * error name and HTTP status: never the SDK error itself, whose fields can echo request
 * details (e.g. S3's SignatureDoesNotMatch returns the access key id and string to sign).
 */
export class RemoteStoreError extends Error {
  constructor(
    readonly operation: string,
    readonly objectKey: string,
    readonly errorName: string,
    readonly httpStatus: number | undefined,
    detail: string,
  ) {
    super(`shared store ${operation} ${objectKey} failed: ${errorName}${httpStatus ? ` (HTTP ${httpStatus})` : ""}: ${detail}`);
    this.name = "RemoteStoreError";
  }
}
