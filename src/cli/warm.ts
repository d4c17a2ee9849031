// `ferry warm IMAGE…`: pre-fetch images into a running ferry's cache, by pulling them
// through it like a client would (so replicas' shared Redis/S3 fill up too): the
// manifest, every (or one) platform's manifest, and every blob, bytes discarded.
import { DEFAULT_HEALTH_POLICY, DEFAULT_USER_AGENT } from "../config/config.ts";
import { TokenCache } from "../upstream/auth.ts";
import { Endpoint } from "../upstream/endpoint.ts";
import { EndpointHealth } from "../upstream/health.ts";
import { ALL_MANIFEST_TYPES } from "../protocol/media-types.ts";
import { parseReference } from "../protocol/image-reference.ts";
import { bytes } from "./table.ts";

export interface WarmOptions {
  mirror: string; // http(s)://host:port of a running ferry
  images: string[];
  platform?: string; // "linux/amd64", "linux/arm64/v8"
  username?: string;
  password?: string;
  concurrency: number;
  out: (line: string) => void;
  progress: (line: string) => void; // \r-style updates (a TTY), or nothing
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface Totals {
  images: number;
  failed: number;
  blobs: number;
  fetched: number; // blobs that were not yet cached
  bytes: number;
  skipped: number; // non-distributable layers: clients fetch them from their own URLs, never a registry
}

/** Layers a registry does not serve (Windows base layers): clients fetch them from `urls`. */
const NON_DISTRIBUTABLE = new Set([
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]);

/** How deep indexes may nest (an index of indexes of …): bounded, so a cycle can't loop. */
const MAX_INDEX_DEPTH = 4;

export async function warm(opts: WarmOptions): Promise<number> {
  const mirror = new Endpoint(
    { url: opts.mirror.replace(/\/+$/, ""), username: opts.username, password: opts.password, timeoutMs: 60_000, stallTimeoutMs: 60_000, headers: {}, allowPrivateRedirects: true, userAgent: DEFAULT_USER_AGENT },
    new TokenCache(),
    new EndpointHealth(DEFAULT_HEALTH_POLICY),
  );
  const totals: Totals = { images: 0, failed: 0, blobs: 0, fetched: 0, bytes: 0, skipped: 0 };
  for (const image of opts.images) {
    try {
      const started = performance.now();
      const before = { ...totals };
      await warmImage(mirror, image, opts, totals);
      totals.images++;
      opts.progress("");
      const skipped = totals.skipped - before.skipped;
      const skippedText = skipped ? `, ${skipped} non-distributable layer${skipped === 1 ? "" : "s"} skipped` : "";
      opts.out(`✔ ${image}: ${totals.blobs - before.blobs} blobs, ${bytes(totals.bytes - before.bytes)}, ${totals.fetched - before.fetched} fetched upstream${skippedText}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (error) {
      totals.failed++;
      opts.progress("");
      opts.out(`✘ ${image}: ${(error as Error).message}`);
    }
  }
  opts.out(`\n${totals.images} of ${totals.images + totals.failed} images warmed: ${totals.blobs} blobs, ${bytes(totals.bytes)} (${totals.fetched} blobs fetched upstream, the rest already cached)`);
  return totals.failed ? 1 : 0;
}

async function warmImage(mirror: Endpoint, image: string, opts: WarmOptions, totals: Totals): Promise<void> {
  const ref = parseReference(image);
  if (typeof ref === "string") throw new Error(ref);
  // Through the mirror, the registry is a path prefix (Docker Hub needs none).
  const name = ref.domain === "docker.io" ? ref.path : `${ref.domain}/${ref.path}`;
  const images: { config: Descriptor; layers: Descriptor[] }[] = [];
  // An index may list indexes (nested multi-platform images): descend, bounded.
  const collect = async (reference: string, depth: number, platform: Descriptor["platform"]): Promise<void> => {
    const m = await getManifest(mirror, name, reference);
    if (!Array.isArray(m.manifests)) {
      images.push(m as { config: Descriptor; layers: Descriptor[] });
      return;
    }
    if (depth >= MAX_INDEX_DEPTH) throw new Error(`indexes nested deeper than ${MAX_INDEX_DEPTH} levels at ${reference}`);
    // A child index without a platform of its own inherits its parent's entry.
    const children = (m.manifests as Descriptor[]).map((c) => ({ ...c, platform: c.platform ?? platform }));
    const wanted = children.filter((c) => !opts.platform || !c.platform || platformOf(c) === opts.platform || platformOf(c, false) === opts.platform);
    for (const child of wanted) await collect(child.digest, depth + 1, child.platform);
  };
  await collect(ref.digest ?? ref.tag ?? "latest", 0, undefined);
  if (images.length === 0) throw new Error(`no manifest for platform ${opts.platform}`);
  const descriptors = images.flatMap((m) => [m.config, ...(m.layers ?? [])]).filter((d) => d?.digest);
  const distributable = descriptors.filter((d) => !NON_DISTRIBUTABLE.has(d.mediaType ?? ""));
  totals.skipped += new Set(descriptors.filter((d) => NON_DISTRIBUTABLE.has(d.mediaType ?? "")).map((d) => d.digest)).size;
  const blobs = [...new Map(distributable.map((d) => [d.digest, d])).values()];
  const total = blobs.reduce((s, b) => s + b.size, 0);
  let done = 0;
  const queue = [...blobs];
  const worker = async () => {
    for (let d = queue.shift(); d; d = queue.shift()) {
      const response = await mirror.request({ method: "GET", path: `/v2/${name}/blobs/${d.digest}`, repository: name });
      if (!response.ok) throw new Error(`blob ${d.digest}: HTTP ${response.status}`);
      if (response.headers.get("x-ferry-cache") === "miss") totals.fetched++;
      const reader = response.body!.getReader();
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        done += value.byteLength;
        totals.bytes += value.byteLength;
        opts.progress(`${image} ${bar(done / Math.max(total, 1))} ${bytes(done)} / ${bytes(total)}`);
      }
      totals.blobs++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
}

async function getManifest(mirror: Endpoint, name: string, reference: string): Promise<{ manifests?: unknown; config: Descriptor; layers: Descriptor[] }> {
  const response = await mirror.request({ method: "GET", path: `/v2/${name}/manifests/${reference}`, repository: name, accept: ALL_MANIFEST_TYPES });
  if (!response.ok) {
    const text = await response.text();
    throw new Error(`manifest ${name}:${reference}: HTTP ${response.status} ${text.slice(0, 200)}`);
  }
  return (await response.json()) as { manifests?: unknown; config: Descriptor; layers: Descriptor[] };
}

function platformOf(d: Descriptor, withVariant = true): string {
  const p = d.platform ?? {};
  return [p.os, p.architecture, withVariant ? p.variant : undefined].filter(Boolean).join("/");
}

function bar(fraction: number, width = 24): string {
  const full = Math.round(Math.min(1, fraction) * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}]`;
}
