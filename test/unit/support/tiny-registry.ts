// A tiny in-process registry for unit tests of the manifest service, the registry client and the upstream
// tiers: it answers manifest HEAD/GET like distribution 2.8 does (including the 404 for
// an Accept that excludes the stored type), and blob HEAD/GET with `Range: bytes=N-`
// (206 and Content-Range, as distribution does), and a test can put a fault in front of it
// (a hanging or stalling answer, an HTML page, a 429). A stand-in for unit tests only:
// the e2e tests use the real distribution (test/harness/upstream.ts).
import { afterEach } from "bun:test";
import type { Server } from "bun";
import { DEFAULT_USER_AGENT, type EndpointConfig, type HealthPolicy, type RegistryConfig } from "../../../src/config/config.ts";

export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const ALL_TYPES = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"];

export interface Logged {
  method: string;
  path: string;
  userAgent: string | null;
  status: number;
}

/** What a fault does with a request instead of the registry; undefined lets it through. */
export type Fault = (req: Request, url: URL) => Response | Promise<Response> | undefined;

export interface TinyRegistry {
  url: string;
  log: Logged[];
  /** Stores a manifest under a tag; returns its digest. */
  put(repository: string, tag: string, mediaType: string, body: string): string;
  /** Stores a blob under a repository; returns its digest. */
  putBlob(repository: string, body: Uint8Array): string;
  fault: Fault | undefined;
  count(filter?: { method?: string; pathIncludes?: string }): number;
  stop(): void;
}

export function sha256(text: string | Uint8Array): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(text).digest("hex")}`;
}

/** A starter of tiny registries that are stopped after each test of the file that calls this. */
export function tinyRegistriesPerTest(): () => TinyRegistry {
  const started: TinyRegistry[] = [];
  afterEach(() => {
    for (const r of started.splice(0)) r.stop();
  });
  return () => {
    const r = startTinyRegistry();
    started.push(r);
    return r;
  };
}

export function startTinyRegistry(): TinyRegistry {
  const manifests = new Map<string, { mediaType: string; body: string; digest: string }>();
  const blobs = new Map<string, Uint8Array>();
  const log: Logged[] = [];
  const registry: TinyRegistry = {
    url: "",
    log,
    fault: undefined,
    put(repository, tag, mediaType, body) {
      const digest = sha256(body);
      const m = { mediaType, body, digest };
      manifests.set(`${repository}:${tag}`, m);
      manifests.set(`${repository}@${digest}`, m);
      return digest;
    },
    putBlob(repository, body) {
      const digest = sha256(body);
      blobs.set(`${repository}@${digest}`, body);
      return digest;
    },
    count(filter = {}) {
      return log.filter((l) => (!filter.method || l.method === filter.method) && (!filter.pathIncludes || l.path.includes(filter.pathIncludes))).length;
    },
    stop() {
      server.stop(true);
    },
  };
  const answer = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const faulted = await registry.fault?.(req, url);
    if (faulted) return faulted;
    if (url.pathname === "/v2/") return Response.json({});
    const b = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(url.pathname);
    if (b) return blobAnswer(req, blobs.get(`${b[1]}@${b[2]}`));
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (!m) return errorJson(404, "NAME_UNKNOWN", "repository name not known to registry");
    const [, repository, reference] = m;
    const stored = manifests.get(reference!.startsWith("sha256:") ? `${repository}@${reference}` : `${repository}:${reference}`);
    if (!stored) return errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown");
    const accept = (req.headers.get("accept") ?? "").split(",").map((s) => s.trim());
    if (!accept.includes(stored.mediaType)) return errorJson(404, "MANIFEST_UNKNOWN", "OCI index found, but accept header does not support OCI indexes");
    const headers = { "Content-Type": stored.mediaType, "Docker-Content-Digest": stored.digest, "Content-Length": String(Buffer.byteLength(stored.body)) };
    return new Response(req.method === "HEAD" ? null : stored.body, { headers });
  };
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const entry: Logged = { method: req.method, path: new URL(req.url).pathname, userAgent: req.headers.get("user-agent"), status: 0 };
      log.push(entry);
      const response = await answer(req);
      entry.status = response.status;
      return response;
    },
  });
  registry.url = `http://127.0.0.1:${server.port}`;
  return registry;
}

function blobAnswer(req: Request, blob: Uint8Array | undefined): Response {
  if (!blob) return errorJson(404, "BLOB_UNKNOWN", "blob unknown to registry");
  const headers = { "Content-Type": "application/octet-stream", "Content-Length": String(blob.byteLength) };
  const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
  if (req.method === "HEAD" || !range) return new Response(req.method === "HEAD" ? null : blob, { headers });
  const start = Number(range[1]);
  if (start >= blob.byteLength) return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${blob.byteLength}` } });
  const part = blob.subarray(start);
  return new Response(part, { status: 206, headers: { ...headers, "Content-Length": String(part.byteLength), "Content-Range": `bytes ${start}-${blob.byteLength - 1}/${blob.byteLength}` } });
}

export function errorJson(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return Response.json({ errors: [{ code, message }] }, { status, headers });
}

/** Headers now, a body that never ends: an upstream that stalls after its headers. */
export function stallingBody(contentType = "application/json"): Response {
  return new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode("{")) }), { headers: { "Content-Type": contentType } });
}

/** A request that never gets an answer (until the server stops). */
export function hanging(): Promise<Response> {
  return new Promise(() => {});
}

/** What Cloudflare answers requests it dislikes with: an HTML page, not a registry error. */
export function htmlPage(status: number): Response {
  return new Response("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>", { status, headers: { "Content-Type": "text/html; charset=UTF-8" } });
}

export const TEST_POLICY: HealthPolicy = { rateLimitCooldownMs: 60_000, failureCooldownMs: 60_000, maxCooldownMs: 5 * 60_000, failureThreshold: 3 };

export function endpointConfig(url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { url, timeoutMs: 2_000, stallTimeoutMs: 2_000, headers: {}, allowPrivateRedirects: true, userAgent: DEFAULT_USER_AGENT, ...extra };
}

export function registryConfig(urls: (string | EndpointConfig)[], health: Partial<HealthPolicy> = {}): RegistryConfig {
  return {
    name: "docker.io",
    hosts: [],
    endpoints: urls.map((u) => (typeof u === "string" ? endpointConfig(u) : u)),
    health: { ...TEST_POLICY, ...health },
    anonymous: true,
    passthroughAuth: false,
    allow: [],
    deny: [],
    tagPolicy: { rules: [] },
  };
}

/** A port nothing listens on (connection refused). */
export async function refusedUrl(): Promise<string> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port;
  s.stop(true);
  return `http://127.0.0.1:${port}`;
}
