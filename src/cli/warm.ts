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
}

export async function warm(opts: WarmOptions): Promise<number> {
  const mirror = new Endpoint(
    { url: opts.mirror.replace(/\/+$/, ""), username: opts.username, password: opts.password, timeoutMs: 60_000, stallTimeoutMs: 60_000, headers: {}, allowPrivateRedirects: true, userAgent: DEFAULT_USER_AGENT },
    new TokenCache(),
    new EndpointHealth(DEFAULT_HEALTH_POLICY),
  );
  const totals: Totals = { images: 0, failed: 0, blobs: 0, fetched: 0, bytes: 0 };
  for (const image of opts.images) {
    try {
      const started = performance.now();
      const before = { ...totals };
      await warmImage(mirror, image, opts, totals);
      totals.images++;
      opts.progress("");
      opts.out(`✔ ${image}: ${totals.blobs - before.blobs} blobs, ${bytes(totals.bytes - before.bytes)}, ${totals.fetched - before.fetched} fetched upstream, ${((performance.now() - started) / 1000).toFixed(1)} s`);
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
  const top = await getManifest(mirror, name, ref.digest ?? ref.tag ?? "latest");
  const images: { config: Descriptor; layers: Descriptor[] }[] = [];
  if (Array.isArray(top.manifests)) {
    const children = (top.manifests as Descriptor[]).filter((m) => !opts.platform || platformOf(m) === opts.platform || platformOf(m, false) === opts.platform);
    if (children.length === 0) throw new Error(`no manifest for platform ${opts.platform}`);
    for (const child of children) images.push(await getManifest(mirror, name, child.digest));
  } else {
    images.push(top as { config: Descriptor; layers: Descriptor[] });
  }
  const blobs = [...new Map(images.flatMap((m) => [m.config, ...m.layers]).map((d) => [d.digest, d])).values()];
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
