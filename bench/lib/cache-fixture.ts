// A large local cache written straight in ferry's on-disk format, for the scenarios
// that need one (start-up and RSS with 100,000 blobs, /api/repositories, eviction):
// pulling that many blobs through an upstream would take longer than the run.
// Paths come from FsBlobStore.pathOf and the metadata goes through SqliteMetaStore, so
// the fixture follows the format wherever src/cache takes it.
import { mkdirSync, writeFileSync } from "node:fs";
import { utimes, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";

const REGISTRY = "docker.io";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

export interface CacheFixture {
  dir: string;
  blobs: { digest: string; size: number }[];
  /** Total bytes of the blob files. */
  bytes: number;
  repositories: number;
  tags: number;
}

/**
 * Writes `blobs` blob files of `minSize`..`minSize + spread` bytes (real content, named by
 * its digest, mtimes spread over the past `blobs` seconds so the LRU order is defined)
 * and `repositories` × `tagsPerRepository` tags, each with its own manifest naming a
 * config and three layers among the blobs.
 */
export async function writeCacheFixture(dir: string, o: { blobs: number; minSize?: number; spread?: number; repositories: number; tagsPerRepository: number }): Promise<CacheFixture> {
  const store = new FsBlobStore(dir);
  const minSize = o.minSize ?? 256;
  const spread = o.spread ?? 2048;
  const blobs: { digest: string; size: number }[] = [];
  const made = new Set<string>();
  const now = Date.now() / 1000;
  let bytes = 0;
  // Files are written 64 at a time through the thread pool: one by one, a loaded disk's
  // metadata updates made 100,000 files take minutes.
  let batch: Promise<void>[] = [];
  for (let i = 0; i < o.blobs; i++) {
    const size = minSize + ((i * 7919) % (spread + 1));
    const content = Buffer.alloc(size, i % 251);
    content.write(`ferry-bench fixture blob ${i}\n`);
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(content).digest("hex")}`;
    const path = store.pathOf({ registry: REGISTRY, digest });
    const parent = dirname(path);
    if (!made.has(parent)) {
      mkdirSync(parent, { recursive: true });
      made.add(parent);
    }
    const mtime = now - (o.blobs - i);
    batch.push(writeFile(path, content).then(() => utimes(path, mtime, mtime)));
    if (batch.length >= 64) {
      await Promise.all(batch);
      batch = [];
    }
    blobs.push({ digest, size });
    bytes += size;
  }
  await Promise.all(batch);
  if (o.repositories > 0 && blobs.length < 4) throw new Error("a fixture with tags needs at least 4 blobs");
  const meta = new SqliteMetaStore(dir);
  let tags = 0;
  for (let r = 0; r < o.repositories; r++) {
    const repo = { registry: REGISTRY, repository: `library/fixture-${r}` };
    for (let t = 0; t < o.tagsPerRepository; t++, tags++) {
      const pick = (k: number) => blobs[(tags * 4 + k) % Math.max(1, blobs.length)]!;
      const [config, ...layers] = [pick(0), pick(1), pick(2), pick(3)];
      const body = new TextEncoder().encode(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config!.digest, size: config!.size },
          layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: l.digest, size: l.size })),
          annotations: { "org.opencontainers.image.ref.name": `fixture-${r}:${t}` },
        }),
      );
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(body).digest("hex")}`;
      await meta.putManifest(repo, { digest, mediaType: OCI_MANIFEST, body });
      await meta.putTag(repo, `v${t}`, { digest, mediaType: OCI_MANIFEST, size: body.byteLength, checkedAt: Date.now() });
    }
  }
  meta.close();
  return { dir, blobs, bytes, repositories: o.repositories, tags };
}

/** Writes one more blob file of `size` bytes into an existing fixture's tier (the newest in LRU order). */
export function addFixtureBlob(dir: string, seed: string, size: number): { digest: string; size: number } {
  const content = Buffer.alloc(size, 7);
  content.write(`ferry-bench extra blob ${seed}\n`);
  const digest = `sha256:${new Bun.CryptoHasher("sha256").update(content).digest("hex")}`;
  const path = new FsBlobStore(dir).pathOf({ registry: REGISTRY, digest });
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  return { digest, size };
}
