// Writes a blob to the local tier and the shared store at once. The local writer
// verifies the digest; only then is the shared upload completed (aborted otherwise),
// so a corrupt or partial blob never becomes visible to other replicas. If the shared
// store fails or stalls mid-way, the blob is still cached locally and served: a slow S3
// never holds a client's download back for longer than REMOTE_WRITE_TIMEOUT_MS.
import type { Logger } from "../observe/logger.ts";
import type { BlobInfo, BlobWriter } from "./blob-store.ts";
import type { RemoteUpload } from "./remote-blob-store.ts";

const REMOTE_WRITE_TIMEOUT_MS = 10_000;

export class TeeBlobWriter implements BlobWriter {
  private remote: RemoteUpload | undefined;

  constructor(
    private readonly local: BlobWriter,
    remote: RemoteUpload,
    private readonly log: Logger,
    private readonly what: string,
  ) {
    this.remote = remote;
  }

  get tempPath(): string {
    return this.local.tempPath;
  }

  get bytesWritten(): number {
    return this.local.bytesWritten;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.local.write(chunk);
    if (!this.remote) return;
    let timer: Timer | undefined;
    try {
      await Promise.race([
        this.remote.write(chunk),
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
    try {
      await this.local.verify(expectedSize);
    } catch (error) {
      await this.remote?.abort().catch(() => {});
      throw error;
    }
  }

  async commit(expectedSize?: number): Promise<BlobInfo> {
    await this.verify(expectedSize);
    const info = await this.local.commit(expectedSize);
    if (this.remote) {
      try {
        await this.remote.complete();
      } catch (error) {
        this.dropRemote(error as Error);
      }
    }
    return info;
  }

  async abort(): Promise<void> {
    await Promise.all([this.local.abort(), this.remote?.abort().catch(() => {})]);
  }

  private dropRemote(error: Error): void {
    this.log.warn({ blob: this.what, error: error.message }, "shared store upload failed; blob kept in the local tier only");
    const remote = this.remote;
    this.remote = undefined;
    void remote?.abort().catch(() => {});
  }
}
