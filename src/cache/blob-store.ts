// Where verified blobs live. A blob becomes visible only through BlobWriter.commit(),
// which checks digest and length first, so readers never see a partial or corrupt blob.

export interface BlobKey {
  registry: string;
  digest: string; // validated "sha256:<hex>" / "sha512:<hex>"
}

export interface BlobInfo {
  size: number;
  /** Local file path, so the server can answer with sendfile. */
  path: string;
}

export interface BlobWriter {
  /** Path of the temp file being written; readers may open it to follow a download. */
  readonly tempPath: string;
  readonly bytesWritten: number;
  /** The length the source announced, told before the first write (the shared upload sizes its parts by it). */
  expectSize?(size: number): void;
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Writes a body from the current end on another thread, written and hashed there;
   * `onProgress` gets the bytes in the file so far. Starts a blob of known size
   * (expectSize); if it fails, bytesWritten says how much is in place, and a resume
   * pipes on from there (never write(): the other thread holds the hash). Absent where a
   * store can't.
   */
  pipe?(body: ReadableStream<Uint8Array>, onProgress: (bytes: number) => void): Promise<void>;
  /** Checks digest (and size when known); throws BlobIntegrityError (and discards) otherwise. */
  verify(expectedSize?: number): Promise<void>;
  /** Makes the verified blob durable and visible (verifies first if verify() was not called). */
  commit(expectedSize?: number): Promise<BlobInfo>;
  abort(): Promise<void>;
}

export interface BlobStore {
  stat(key: BlobKey): Promise<BlobInfo | undefined>;
  /** Starts writing a blob; `expectedSize`, when known, lets a store refuse what can't fit. */
  begin(key: BlobKey, expectedSize?: number): Promise<BlobWriter>;
  /** Records that a blob was served (for least-recently-used eviction). */
  touch(key: BlobKey): void;
}

/**
 * Writing the cache itself failed (a full disk, a read-only mount, an I/O error): a local
 * fault, never the upstream's, so it cools no tier down and is not resumed.
 */
export class CacheWriteError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "CacheWriteError";
  }

  get diskFull(): boolean {
    return this.code === "ENOSPC" || this.code === "EDQUOT";
  }

  static from(error: unknown, doing: string): CacheWriteError {
    if (error instanceof CacheWriteError) return error;
    const code = (error as NodeJS.ErrnoException)?.code;
    const full = code === "ENOSPC" || code === "EDQUOT";
    return new CacheWriteError(code, `${full ? "cache disk full" : "cache write failed"} (${doing}): ${(error as Error)?.message ?? String(error)}`);
  }
}

export class BlobIntegrityError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly expectedSize?: number,
    readonly actualSize?: number,
  ) {
    super(
      expectedSize !== undefined && actualSize !== undefined && expectedSize !== actualSize
        ? `blob length mismatch: expected ${expectedSize} bytes, got ${actualSize}`
        : `blob digest mismatch: expected ${expected}, got ${actual}`,
    );
    this.name = "BlobIntegrityError";
  }
}
