// Copies blobs the local tier has and the shared store lacks (cached before [s3] was
// configured, or whose upload failed while S3 was down) to the shared store. It runs when
// such a blob is served from local disk, in the background: the hit itself never waits.
// Done on hits rather than by a sweep of the whole tier because a blob nobody pulls
// needs no sharing, and this needs no operator step: one HEAD per blob per process, at
// most CONCURRENCY copies at once, each from the verified local file under the blob's
// cross-replica lease (so a peer missing it waits for this copy instead of going upstream).
// The upload verifies the digest again before it completes, as every upload does.
import { LRUCache } from "lru-cache";
import type { BlobKey } from "../cache/blob-store.ts";
import type { Lease } from "../cache/locks.ts";
import type { RemoteBlobStore } from "../cache/remote-blob-store.ts";
import type { Logger } from "../observe/logger.ts";

const CONCURRENCY = 2;
const MAX_QUEUED = 1_000;
/** Blobs remembered as in the shared store (or being copied); older ones are looked up again. */
const REMEMBERED = 100_000;
/** A blob whose copy failed is tried again on a hit after this long. */
const RETRY_AFTER_MS = 5 * 60_000;
/** After the store failed, no new copies for this long (each would wait for its timeouts). */
const PAUSE_AFTER_STORE_ERROR_MS = 30_000;

type Known = { state: "queued" | "present" } | { state: "failed"; at: number };

interface Item {
  key: BlobKey;
  id: string;
  path: string;
  size: number;
}

export class SharedBackfill {
  private readonly known = new LRUCache<string, Known>({ max: REMEMBERED });
  private readonly queue: Item[] = [];
  private running = 0;
  private pausedUntil = 0;

  constructor(
    private readonly store: RemoteBlobStore,
    private readonly lease: (key: BlobKey) => Promise<Lease | undefined>,
    private readonly log: Logger,
  ) {}

  /** A blob was served from local disk at `path`: copy it to the shared store if it is missing there. */
  offer(key: BlobKey, path: string, size: number): void {
    const id = `${key.registry}/${key.digest}`;
    const known = this.known.get(id);
    if (known && (known.state !== "failed" || Date.now() - known.at < RETRY_AFTER_MS)) return;
    if (Date.now() < this.pausedUntil || this.queue.length >= MAX_QUEUED) return;
    this.known.set(id, { state: "queued" });
    this.queue.push({ key, id, path, size });
    this.pump();
  }

  private pump(): void {
    while (this.running < CONCURRENCY && this.queue.length > 0) {
      const item = this.queue.shift()!;
      this.running++;
      void this.copy(item).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async copy(item: Item): Promise<void> {
    const { key, id } = item;
    let lease: Lease | undefined;
    try {
      if (await this.store.stat(key)) {
        this.known.set(id, { state: "present" });
        return;
      }
      lease = await this.lease(key);
      if (!lease) {
        // Another replica is fetching it and will publish it; look again on a later hit.
        this.known.set(id, { state: "failed", at: Date.now() });
        return;
      }
      const upload = this.store.beginUpload(key, item.size);
      try {
        for await (const chunk of Bun.file(item.path).stream()) await upload.write(chunk);
        await upload.complete();
      } catch (error) {
        await upload.abort().catch(() => {});
        throw error;
      }
      this.known.set(id, { state: "present" });
      this.log.info({ blob: id, bytes: item.size }, "blob copied from the local tier to the shared store");
    } catch (error) {
      this.known.set(id, { state: "failed", at: Date.now() });
      if ((error as Error).name === "RemoteStoreError") this.pausedUntil = Date.now() + PAUSE_AFTER_STORE_ERROR_MS;
      this.log.warn({ blob: id, error: (error as Error).message }, "copying a blob to the shared store failed; it stays in the local tier");
    } finally {
      await lease?.release();
    }
  }
}
