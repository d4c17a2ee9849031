// `ferry prune`: trim the local blob tier (to a size, least recently used first, and/or
// by age of last use, with the tags and manifests unused for as long) and remove orphans
// from the shared S3 store: blobs no cached manifest refers to any more, and multipart
// uploads a killed replica left open (they are billed, yet invisible). Safe while ferry
// serves: a pruned blob or tag is a miss, and the server stops counting deleted blobs.
import { FsBlobStore } from "../cache/fs-blob-store.ts";
import type { MetaStore } from "../cache/meta-store.ts";
import { SharedRedis } from "../redis/redis-client.ts";
import type { RemoteStoreError } from "../cache/remote-blob-store.ts";
import { S3BlobStore } from "../cache/s3-blob-store.ts";
import { SharedMetaStore } from "../cache/shared-meta-store.ts";
import { SqliteMetaStore } from "../cache/sqlite-meta-store.ts";
import type { Config } from "../config/config.ts";
import { createLogger } from "../observe/logger.ts";
import { bytes } from "./table.ts";

export interface PruneOptions {
  maxSize?: number;
  olderThanMs?: number;
  s3Orphans: boolean;
  /** Orphans and multipart uploads younger than this are kept: their manifest (or last part) may be on its way. */
  orphanGraceMs: number;
  dryRun: boolean;
  out: (line: string) => void;
}

export async function prune(config: Config, opts: PruneOptions): Promise<number> {
  const store = new FsBlobStore(config.cache.dir);
  await store.usage.load(`${config.cache.dir}/blobs`);
  const before = { files: store.usage.count, bytes: store.usage.size };
  opts.out(`local tier: ${before.files} blobs, ${bytes(before.bytes)} in ${config.cache.dir}`);
  if (opts.olderThanMs !== undefined) {
    const cutoff = Date.now() - opts.olderThanMs;
    const r = await store.usage.evictOlderThan(cutoff, opts.dryRun);
    opts.out(`${opts.dryRun ? "would remove" : "removed"} ${r.files} blobs (${bytes(r.bytes)}) unused for longer than ${Math.round(opts.olderThanMs / 1000)} s`);
    // The embedded database: tags nobody pulled or confirmed since, and manifests nothing kept reaches.
    const meta = new SqliteMetaStore(config.cache.dir);
    try {
      const m = await meta.pruneOlderThan(cutoff, opts.dryRun);
      opts.out(`metadata: ${opts.dryRun ? "would remove" : "removed"} ${m.tags} tags and ${m.manifests} manifests unused for as long`);
    } finally {
      meta.close();
    }
  }
  if (opts.maxSize !== undefined) {
    const r = opts.dryRun ? store.usage.planEvictTo(opts.maxSize) : await store.usage.evictTo(opts.maxSize);
    opts.out(`${opts.dryRun ? "would remove" : "removed"} ${r.files} blobs (${bytes(r.bytes)}) to fit ${bytes(opts.maxSize)}`);
  }
  if (opts.s3Orphans) {
    if (!config.s3) {
      opts.out("--s3-orphans: no [s3] configured");
      return 2;
    }
    const log = createLogger("silent");
    const local = new SqliteMetaStore(config.cache.dir);
    const redis = config.redis ? new SharedRedis(config.redis, log) : undefined;
    if (redis && !(await redis.waitReady(3_000))) {
      opts.out("redis is not reachable: without every replica's manifests, orphans can't be told apart; nothing removed from S3");
      await redis.close();
      local.close();
      return 1;
    }
    try {
      const meta: MetaStore = redis ? new SharedMetaStore(local, redis) : local;
      const referenced = await referencedBlobs(meta);
      const s3 = new S3BlobStore(config.s3);
      let kept = 0;
      let removed = 0;
      let removedBytes = 0;
      const cutoff = Date.now() - opts.orphanGraceMs;
      for await (const object of s3.list()) {
        if (referenced.has(`${object.key.registry}/${object.key.digest}`) || object.lastModified.getTime() > cutoff) {
          kept++;
          continue;
        }
        if (!opts.dryRun) await s3.delete(object.key);
        removed++;
        removedBytes += object.size;
      }
      opts.out(`s3: ${opts.dryRun ? "would remove" : "removed"} ${removed} orphaned blobs (${bytes(removedBytes)}); kept ${kept}`);
      await abortStaleUploads(s3, cutoff, opts);
    } finally {
      await redis?.close();
      local.close();
    }
  }
  return 0;
}

/** Aborts multipart uploads begun before `cutoff`: a live replica's upload is done by then (a days-long one needs a longer --grace). */
async function abortStaleUploads(s3: S3BlobStore, cutoff: number, opts: PruneOptions): Promise<void> {
  let aborted = 0;
  let kept = 0;
  try {
    for await (const upload of s3.uploads()) {
      if (upload.initiated.getTime() > cutoff) {
        kept++;
        continue;
      }
      if (!opts.dryRun) await s3.abortUpload(upload.objectKey, upload.uploadId);
      aborted++;
    }
  } catch (error) {
    // Some S3-compatible stores lack ListMultipartUploads: say so, the bucket's lifecycle rule still applies.
    if (![400, 405, 501].includes((error as RemoteStoreError).httpStatus ?? 0)) throw error;
    opts.out(`s3: this store does not list multipart uploads (${(error as Error).message}); rely on an AbortIncompleteMultipartUpload lifecycle rule`);
    return;
  }
  opts.out(`s3: ${opts.dryRun ? "would abort" : "aborted"} ${aborted} stale multipart uploads; kept ${kept}`);
}

/** registry/digest of every config and layer blob named by a cached image manifest. */
async function referencedBlobs(meta: MetaStore): Promise<Set<string>> {
  const referenced = new Set<string>();
  for await (const m of meta.manifests()) {
    try {
      const body = JSON.parse(new TextDecoder().decode(m.body)) as { config?: { digest?: string }; layers?: { digest?: string }[] };
      for (const d of [body.config, ...(body.layers ?? [])]) if (d?.digest) referenced.add(`${m.registry}/${d.digest}`);
    } catch {}
  }
  return referenced;
}
