// Test images built offline, as OCI image layouts on disk.
//
// Layers are real tar+gzip archives (tar headers written here, gzip from zlib)
// holding small text files under /etc/ferry-test/, so dockerd, containerd and
// podman can unpack them. Configs carry correct rootfs.diff_ids (sha256 of the
// uncompressed tar), manifests carry correct sizes and digests.
//
// Output is deterministic for a given seed (and Bun/zlib version), so images
// are cached under os.tmpdir() and reused by every test file of a run (and by
// later runs). A build goes to a private temp dir that is renamed into place,
// which makes concurrent builds from several processes safe.

import { createCipheriv, createHash } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";

// Media types -----------------------------------------------------------------

export const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/** Every manifest media type, for an Accept header that takes anything. */
export const ALL_MANIFEST_TYPES = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest];

// Result types ------------------------------------------------------------------

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface LayerInfo {
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar (what rootfs.diff_ids holds). */
  diffId: string;
  mediaType: string;
  /** Regular files in the layer (paths without leading slash). */
  files: string[];
}

export interface ManifestInfo {
  platform?: Platform;
  digest: string;
  mediaType: string;
  size: number;
  configDigest: string;
  configSize: number;
  layers: LayerInfo[];
}

export interface BlobInfo {
  digest: string;
  size: number;
  mediaType: string;
}

export interface BuiltImage {
  /** Builder name plus variant, e.g. "multiArch-oci". */
  name: string;
  /** OCI image layout directory (has oci-layout, index.json, blobs/). */
  layoutDir: string;
  /** Ref name of the image inside the layout (index.json annotation). */
  tag: string;
  /** `oci:<layoutDir>:<tag>`. */
  ociRef: string;
  /**
   * Source ref for `skopeo copy`: the OCI layout for OCI images; a `dir:` view
   * (hard links to the same blobs) for Docker media types, because skopeo 1.9
   * ignores index.json entries whose media type is not OCI.
   */
  skopeoRef: string;
  /** Media type of the top-level object a client pulls by tag. */
  mediaType: string;
  /** Digest of the index / manifest list, for multi-platform images. */
  indexDigest?: string;
  /** Top-level digest a client gets when pulling by tag (index or manifest). */
  manifestDigest: string;
  manifestSize: number;
  /** Platform manifests (exactly one for single-platform images). */
  manifests: ManifestInfo[];
  /** Config and layer blobs, unique by digest. */
  blobs: BlobInfo[];
  configDigests: string[];
}

// Small utilities -----------------------------------------------------------------

const sha256hex = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");
export const sha256Digest = (data: Uint8Array | string) => `sha256:${sha256hex(data)}`;

/** Path of a blob inside an image's layout. */
export function blobPath(image: Pick<BuiltImage, "layoutDir">, digest: string): string {
  const [alg, hex] = digest.split(":");
  return join(image.layoutDir, "blobs", alg ?? "sha256", hex ?? "");
}

/** Bytes of a blob (manifest, config or layer) of a built image. */
export function readBlob(image: Pick<BuiltImage, "layoutDir">, digest: string): Uint8Array {
  return readFileSync(blobPath(image, digest));
}

/** Deterministic pseudo-random bytes: AES-128-CTR keystream keyed by the seed (fast, incompressible). */
function keystream(seed: string): (n: number) => Buffer {
  const key = createHash("sha256").update(`key:${seed}`).digest().subarray(0, 16);
  const iv = createHash("sha256").update(`iv:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, iv);
  return (n) => cipher.update(Buffer.alloc(n));
}

// Tar writer (ustar) -----------------------------------------------------------------

// Fixed timestamp so archives are reproducible.
const MTIME = 1_700_000_000;

interface TarEntry {
  path: string;
  type: "file" | "dir";
  mode?: number;
  /** File content; for big files use `size` + streaming instead. */
  data?: Uint8Array;
}

function octal(value: number, width: number): string {
  // width includes the trailing NUL
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** One 512-byte ustar header. */
function tarHeader(path: string, type: "file" | "dir", size: number, mode: number): Buffer {
  const h = Buffer.alloc(512);
  if (Buffer.byteLength(path) > 100) throw new Error(`tar path too long for this writer: ${path}`);
  h.write(path, 0, 100, "utf8");
  h.write(octal(mode, 8), 100, "ascii");
  h.write(octal(0, 8), 108, "ascii"); // uid
  h.write(octal(0, 8), 116, "ascii"); // gid
  h.write(octal(size, 12), 124, "ascii");
  h.write(octal(MTIME, 12), 136, "ascii");
  h.write("        ", 148, "ascii"); // checksum placeholder (spaces)
  h.write(type === "dir" ? "5" : "0", 156, "ascii");
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  h.write("root", 265, "ascii");
  h.write("root", 297, "ascii");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + " ", 148, "ascii");
  return h;
}

const pad512 = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

function tarArchive(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? new Uint8Array(0);
    const size = e.type === "file" ? data.length : 0;
    parts.push(tarHeader(e.path, e.type, size, e.mode ?? (e.type === "dir" ? 0o755 : 0o644)));
    if (size > 0) parts.push(Buffer.from(data), pad512(size));
  }
  parts.push(Buffer.alloc(1024)); // end-of-archive marker
  return Buffer.concat(parts);
}

// Layout writer ---------------------------------------------------------------------

class LayoutWriter {
  readonly blobs = new Map<string, BlobInfo>();
  constructor(readonly dir: string) {
    mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  }

  put(data: Uint8Array, mediaType: string): BlobInfo {
    const digest = sha256Digest(data);
    const info = { digest, size: data.length, mediaType };
    writeFileSync(blobPath({ layoutDir: this.dir }, digest), data);
    return info;
  }

  /** Config or layer blob: remembered in `blobs`. */
  putBlob(data: Uint8Array, mediaType: string): BlobInfo {
    const info = this.put(data, mediaType);
    if (!this.blobs.has(info.digest)) this.blobs.set(info.digest, info);
    return info;
  }

  /** A small layer from tar entries. */
  layer(entries: TarEntry[], mediaType: string): LayerInfo {
    const tar = tarArchive(entries);
    const gz = zlib.gzipSync(tar, { level: 6 });
    const info = this.putBlob(gz, mediaType);
    return {
      ...info,
      diffId: sha256Digest(tar),
      files: entries.filter((e) => e.type === "file").map((e) => e.path),
    };
  }

  /** The layout's index.json, naming one top-level descriptor with `tag`. */
  finish(top: { mediaType: string; digest: string; size: number }, tag: string): void {
    const index = {
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: [
        {
          mediaType: top.mediaType,
          digest: top.digest,
          size: top.size,
          annotations: { "org.opencontainers.image.ref.name": tag },
        },
      ],
    };
    writeFileSync(join(this.dir, "index.json"), JSON.stringify(index));
  }
}

/**
 * containers/image "dir:" layout of the same image: manifest.json (top level),
 * <hex>.manifest.json per platform manifest, blobs named by hex digest.
 */
function writeDirView(layoutDir: string, dir: string, topDigest: string, instanceDigests: string[]): void {
  mkdirSync(dir, { recursive: true });
  const hex = (d: string) => d.slice(d.indexOf(":") + 1);
  const src = (d: string) => blobPath({ layoutDir }, d);
  writeFileSync(join(dir, "version"), "Directory Transport Version: 1.1\n");
  linkSync(src(topDigest), join(dir, "manifest.json"));
  const manifests = instanceDigests.length ? instanceDigests : [topDigest];
  for (const d of instanceDigests) linkSync(src(d), join(dir, `${hex(d)}.manifest.json`));
  for (const d of manifests) {
    const m = JSON.parse(readFileSync(src(d), "utf8")) as { config: { digest: string }; layers: { digest: string }[] };
    for (const b of [m.config, ...m.layers]) {
      const target = join(dir, hex(b.digest));
      if (!existsSync(target)) linkSync(src(b.digest), target);
    }
  }
}

type Format = "oci" | "docker";

function typesFor(format: Format) {
  return format === "oci"
    ? { manifest: MT.ociManifest, config: MT.ociConfig, layer: MT.ociLayerGzip, index: MT.ociIndex }
    : { manifest: MT.dockerManifest, config: MT.dockerConfig, layer: MT.dockerLayerGzip, index: MT.dockerList };
}

/** Config blob + manifest blob for one platform image. */
function writeImage(
  w: LayoutWriter,
  format: Format,
  platform: Platform,
  layers: LayerInfo[],
  label: string,
): ManifestInfo {
  const t = typesFor(format);
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: "2024-01-01T00:00:00Z",
    config: {
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      Labels: { "org.ferry.test.image": label },
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    // One history entry per layer: some clients cross-check the counts.
    history: layers.map((_, i) => ({ created: "2024-01-01T00:00:00Z", created_by: `ferry-test ${label} layer ${i}` })),
  };
  const cfg = w.putBlob(Buffer.from(JSON.stringify(config)), t.config);
  const manifest = {
    schemaVersion: 2,
    mediaType: t.manifest,
    config: { mediaType: t.config, digest: cfg.digest, size: cfg.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const m = w.put(Buffer.from(JSON.stringify(manifest, null, 3)), t.manifest);
  return {
    platform,
    digest: m.digest,
    mediaType: t.manifest,
    size: m.size,
    configDigest: cfg.digest,
    configSize: cfg.size,
    layers,
  };
}

function textLayerEntries(files: Record<string, string>): TarEntry[] {
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  for (const path of Object.keys(files)) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/") + "/");
  }
  for (const d of [...dirs].sort()) entries.push({ path: d, type: "dir" });
  for (const [path, text] of Object.entries(files)) {
    entries.push({ path, type: "file", data: Buffer.from(text) });
  }
  return entries;
}

// Cache ----------------------------------------------------------------------------

// Bump when the image recipes change, so stale caches are not reused.
const RECIPE_VERSION = 2;

export function imageCacheRoot(): string {
  return join(tmpdir(), `ferry-test-images-v${RECIPE_VERSION}-bun${Bun.version}`);
}

type Stored = Omit<BuiltImage, "layoutDir" | "ociRef" | "skopeoRef">;

const memo = new Map<string, Promise<BuiltImage>>();

/**
 * Build once per cache key: in-process memo, then the on-disk cache, else a
 * fresh build in a private dir renamed into place (first rename wins).
 */
function cached(key: string, build: (layoutDir: string) => Promise<Stored> | Stored): Promise<BuiltImage> {
  let p = memo.get(key);
  if (!p) {
    p = (async () => {
      const root = imageCacheRoot();
      const finalDir = join(root, key);
      const load = (): BuiltImage | undefined => {
        const resultFile = join(finalDir, "result.json");
        if (!existsSync(resultFile)) return undefined;
        const stored = JSON.parse(readFileSync(resultFile, "utf8")) as Stored;
        const layoutDir = join(finalDir, "layout");
        const ociRef = `oci:${layoutDir}:${stored.tag}`;
        const isDocker = stored.mediaType === MT.dockerList || stored.mediaType === MT.dockerManifest;
        return { ...stored, layoutDir, ociRef, skopeoRef: isDocker ? `dir:${join(finalDir, "dir")}` : ociRef };
      };
      const hit = load();
      if (hit) return hit;
      mkdirSync(root, { recursive: true });
      const work = join(root, `.build-${key}-${process.pid}-${Math.random().toString(36).slice(2)}`);
      try {
        const stored = await build(join(work, "layout"));
        // result.json is written last: its presence marks a complete build.
        writeFileSync(join(work, "result.json"), JSON.stringify(stored, null, 1));
        try {
          renameSync(work, finalDir);
        } catch (e) {
          // Another process won the race (target exists and is not empty).
          if (!load()) throw e;
        }
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
      const built = load();
      if (!built) throw new Error(`image cache ${finalDir} incomplete after build`);
      return built;
    })();
    memo.set(key, p);
    // Let a failed build be retried.
    p.catch(() => memo.delete(key));
  }
  return p;
}

function stored(
  name: string,
  w: LayoutWriter,
  tag: string,
  top: { mediaType: string; digest: string; size: number; isIndex: boolean },
  manifests: ManifestInfo[],
): Stored {
  w.finish(top, tag);
  writeDirView(w.dir, join(w.dir, "..", "dir"), top.digest, top.isIndex ? manifests.map((m) => m.digest) : []);
  return {
    name,
    tag,
    mediaType: top.mediaType,
    ...(top.isIndex ? { indexDigest: top.digest } : {}),
    manifestDigest: top.digest,
    manifestSize: top.size,
    manifests,
    blobs: [...w.blobs.values()],
    configDigests: [...new Set(manifests.map((m) => m.configDigest))],
  };
}

// Image recipes ------------------------------------------------------------------

export interface ImageOptions {
  /** Changes every digest; the same seed gives the same bytes. */
  seed?: string;
}

/**
 * linux/amd64 (2 layers) + linux/arm64 (1 layer) behind an OCI image index
 * (format "oci", default) or a Docker manifest list (format "docker", with
 * Docker schema2 platform manifests). Layer and config blobs are identical
 * across the two formats; only the manifests differ.
 */
export function multiArch(opts: ImageOptions & { format?: Format } = {}): Promise<BuiltImage> {
  const seed = opts.seed ?? "default";
  const format = opts.format ?? "oci";
  const name = `multiArch-${format}`;
  return cached(`${name}-${seed}`, (dir) => {
    const w = new LayoutWriter(dir);
    const t = typesFor(format);
    const plats: { platform: Platform; layers: Record<string, string>[] }[] = [
      {
        platform: { os: "linux", architecture: "amd64" },
        layers: [
          { "etc/ferry-test/arch.txt": `amd64 ${seed}\n` },
          { "etc/ferry-test/app.txt": `multi-arch app layer for amd64 ${seed}\n` },
        ],
      },
      {
        platform: { os: "linux", architecture: "arm64", variant: "v8" },
        layers: [{ "etc/ferry-test/arch.txt": `arm64 ${seed}\n` }],
      },
    ];
    const manifests = plats.map(({ platform, layers }) =>
      writeImage(
        w,
        format,
        platform,
        layers.map((files) => w.layer(textLayerEntries(files), t.layer)),
        `multiArch ${platform.architecture} ${seed}`,
      ),
    );
    const index = {
      schemaVersion: 2,
      mediaType: t.index,
      manifests: manifests.map((m) => ({
        mediaType: m.mediaType,
        digest: m.digest,
        size: m.size,
        platform: m.platform,
      })),
    };
    const top = w.put(Buffer.from(JSON.stringify(index, null, 3)), t.index);
    return stored(name, w, "latest", { ...top, isIndex: true }, manifests);
  });
}

/** linux/amd64 Docker schema2 image with 5 small layers (/etc/ferry-test/layerN.txt). */
export function fiveLayer(opts: ImageOptions = {}): Promise<BuiltImage> {
  const seed = opts.seed ?? "default";
  const name = "fiveLayer";
  return cached(`${name}-${seed}`, (dir) => {
    const w = new LayoutWriter(dir);
    const layers: LayerInfo[] = [];
    for (let i = 1; i <= 5; i++) {
      // A few KiB of mildly compressible text per layer.
      const body = Array.from({ length: 64 * i }, (_, j) => `layer ${i} line ${j} seed ${seed}`).join("\n") + "\n";
      layers.push(w.layer(textLayerEntries({ [`etc/ferry-test/layer${i}.txt`]: body }), MT.dockerLayerGzip));
    }
    const m = writeImage(w, "docker", { os: "linux", architecture: "amd64" }, layers, `fiveLayer ${seed}`);
    return stored(name, w, "latest", { mediaType: m.mediaType, digest: m.digest, size: m.size, isIndex: false }, [m]);
  });
}

/**
 * linux/amd64 OCI image with one ~sizeMiB layer (default 100) of incompressible
 * pseudo-random bytes in /etc/ferry-test/big.bin. gzip level 0 (stored blocks):
 * valid gzip, fast to write, and as big as the data.
 */
export function bigLayer(opts: ImageOptions & { sizeMiB?: number } = {}): Promise<BuiltImage> {
  const seed = opts.seed ?? "default";
  const sizeMiB = opts.sizeMiB ?? 100;
  const name = "bigLayer";
  return cached(`${name}-${sizeMiB}m-${seed}`, async (dir) => {
    const w = new LayoutWriter(dir);
    const size = sizeMiB * 1024 * 1024;
    const path = "etc/ferry-test/big.bin";
    const rand = keystream(`big:${seed}`);

    // Stream tar -> (sha256 of tar) -> gzip -> (sha256 of gz, temp file).
    const tmpFile = join(dir, "big.tmp");
    const out = createWriteStream(tmpFile);
    const gz = zlib.createGzip({ level: 0 });
    const tarHash = createHash("sha256");
    const gzHash = createHash("sha256");
    let gzSize = 0;
    gz.on("data", (chunk: Buffer) => {
      gzHash.update(chunk);
      gzSize += chunk.length;
    });
    gz.pipe(out);
    const closed = new Promise<void>((resolve, reject) => {
      out.on("close", () => resolve());
      out.on("error", reject);
      gz.on("error", reject);
    });
    const feed = async (chunk: Buffer) => {
      tarHash.update(chunk);
      if (!gz.write(chunk)) await new Promise<void>((r) => gz.once("drain", () => r()));
    };
    for (const d of ["etc/", "etc/ferry-test/"]) await feed(tarHeader(d, "dir", 0, 0o755));
    await feed(tarHeader(path, "file", size, 0o644));
    const CHUNK = 4 * 1024 * 1024;
    for (let done = 0; done < size; ) {
      const n = Math.min(CHUNK, size - done);
      await feed(rand(n));
      done += n;
    }
    await feed(pad512(size));
    await feed(Buffer.alloc(1024));
    gz.end();
    await closed;

    const digest = `sha256:${gzHash.digest("hex")}`;
    renameSync(tmpFile, blobPath({ layoutDir: dir }, digest));
    const info: BlobInfo = { digest, size: gzSize, mediaType: MT.ociLayerGzip };
    w.blobs.set(digest, info);
    const layer: LayerInfo = { ...info, diffId: `sha256:${tarHash.digest("hex")}`, files: [path] };
    const m = writeImage(w, "oci", { os: "linux", architecture: "amd64" }, [layer], `bigLayer ${seed}`);
    return stored(name, w, "latest", { mediaType: m.mediaType, digest: m.digest, size: m.size, isIndex: false }, [m]);
  });
}
