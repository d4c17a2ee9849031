// Writes a blob to the local tier and the shared store at once. The local writer
// verifies the digest; only then is the shared upload completed (aborted otherwise),
// so a corrupt or partial blob never becomes visible to other replicas. If the shared
// store fails or stalls mid-way, the blob is still cached locally and served: a slow S3
// never holds a client's download back for longer than REMOTE_WRITE_TIMEOUT_MS.
// The shared upload begins at the first write, with the length the source announced.
import type { Logger } from "../observe/logger.ts";
import type { BlobInfo, BlobWriter } from "./blob-store.ts";
import type { RemoteUpload } from "./remote-blob-store.ts";

const REMOTE_WRITE_TIMEOUT_MS = 10_000;

export class TeeBlobWriter implements BlobWriter {
  private remote: RemoteUpload | undefined;
  private expectedSize: number | undefined;

  constructor(
    private readonly local: BlobWriter,
    private beginRemote: ((expectedSize?: number) => RemoteUpload) | undefined,
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  expectSize(size: number): void {
    this.expectedSize ??= size;
  }

  get tempPath(): string {
    return this.local.tempPath;
  }

  get bytesWritten(): number {
    return this.local.bytesWritten;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.local.write(chunk);
    const remote = this.remoteUpload();
    if (!remote) return;
    let timer: Timer | undefined;
    try {
      await Promise.race([
        remote.write(chunk),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`shared store accepted no data for ${REMOTE_WRITE_TIMEOUT_MS / 1000} s`)), REMOTE_WRITE_TIMEOUT_MS);
        }),
      ]);
    } catch (error) {
      this.dropRemote(error as Error);
    } finally {
      clearTimeout(timer);
    }
  }

  async verify(expectedSize?: number): Promise<void> {
    this.expectedSize ??= expectedSize;
    try {
      await this.local.verify(expectedSize);
    } catch (error) {
      this.beginRemote = undefined;
      await this.remote?.abort().catch(() => {});
      throw error;
    }
  }

  async commit(expectedSize?: number): Promise<BlobInfo> {
    await this.verify(expectedSize);
    const info = await this.local.commit(expectedSize);
    const remote = this.remoteUpload();
    if (remote) {
      try {
        await remote.complete();
      } catch (error) {
        this.dropRemote(error as Error);
      }
    }
    return info;
  }

  async abort(): Promise<void> {
    this.beginRemote = undefined;
    await Promise.all([this.local.abort(), this.remote?.abort().catch(() => {})]);
  }

  /** The shared upload, begun on first use; undefined once it was dropped. */
  private remoteUpload(): RemoteUpload | undefined {
    if (this.beginRemote) {
      const begin = this.beginRemote;
      this.beginRemote = undefined;
      try {
        this.remote = begin(this.expectedSize);
      } catch (error) {
        this.dropRemote(error as Error);
      }
    }
    return this.remote;
  }

  private dropRemote(error: Error): void {
    this.log.warn({ blob: this.what, error: error.message }, "shared store upload failed; blob kept in the local tier only");
    const remote = this.remote;
    this.remote = undefined;
    void remote?.abort().catch(() => {});
  }
}
