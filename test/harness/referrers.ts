// A stand-in for an upstream with the OCI referrers API. No registry that has one installs
// here (Debian's distribution 2.8 predates it), so this small front answers
// GET /v2/<name>/referrers/<digest> itself, following the distribution spec's text, from the
// harness registry's own storage (every manifest of <name> whose `subject` is <digest>), and
// proxies everything else to the harness front (token auth, CDN redirects and all).
//   - the answer is an OCI image index of descriptors (artifactType, annotations kept);
//   - ?artifactType= filters, and then OCI-Filters-Applied: artifactType says so;
//   - ?n= pages (a stand-in choice: the spec leaves the cursor to the registry), with an
//     absolute Link: <…>; rel="next" as a registry on another host would send;
//   - a bad digest is a 400; the stand-in checks no token (the test repositories are public).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import { LOOPBACK } from "./proc.ts";
import type { Upstream } from "./upstream.ts";

export const MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const MT_EMPTY = "application/vnd.oci.empty.v1+json";
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ReferrersFront {
  url: string;
  host: string;
  /** Requests seen (method, path, query, status), for counting what ferry asked. */
  readonly log: { method: string; path: string; query: string; status: number }[];
  /** Answer every request with this status (an OCI error body) until cleared with null. */
  setFailure(status: number | null): void;
  stop(): Promise<void>;
}

export async function startReferrersFront(upstream: Upstream): Promise<ReferrersFront> {
  const log: ReferrersFront["log"] = [];
  let failure: number | null = null;
  let server: Server<undefined> | undefined;
  const url = () => `http://${LOOPBACK}:${server!.port}`;

  function referrers(name: string, subject: string, params: URLSearchParams): Response {
    if (!DIGEST_RE.test(subject)) return json(400, { errors: [{ code: "DIGEST_INVALID", message: "invalid digest" }] });
    const revisions = join(upstream.dataDir, "docker/registry/v2/repositories", name, "_manifests/revisions/sha256");
    let found: Descriptor[] = [];
    for (const hex of existsSync(revisions) ? readdirSync(revisions) : []) {
      const digest = `sha256:${hex}`;
      const bytes = readFileSync(upstream.blobFile(digest));
      const m = JSON.parse(bytes.toString("utf8")) as { mediaType?: string; artifactType?: string; config?: { mediaType?: string }; subject?: { digest?: string }; annotations?: Record<string, string> };
      if (m.subject?.digest !== subject) continue;
      // The spec: artifactType, else the config's media type.
      const artifactType = m.artifactType ?? m.config?.mediaType;
      found.push({ mediaType: m.mediaType ?? MT_OCI_MANIFEST, digest, size: bytes.byteLength, ...(artifactType && { artifactType }), ...(m.annotations && { annotations: m.annotations }) });
    }
    const headers: Record<string, string> = { "content-type": MT_OCI_INDEX };
    const wanted = params.get("artifactType");
    if (wanted) {
      found = found.filter((d) => d.artifactType === wanted);
      headers["oci-filters-applied"] = "artifactType";
    }
    found.sort((a, b) => a.digest.localeCompare(b.digest));
    const last = params.get("last");
    if (last) found = found.filter((d) => d.digest > last);
    const n = Number(params.get("n") ?? NaN);
    if (Number.isInteger(n) && n > 0 && found.length > n) {
      found = found.slice(0, n);
      const next = new URLSearchParams(params);
      next.set("last", found[found.length - 1]!.digest);
      headers.link = `<${url()}/v2/${name}/referrers/${subject}?${next}>; rel="next"`;
    }
    return json(200, { schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests: found }, headers);
  }

  async function proxy(req: Request, target: URL): Promise<Response> {
    const headers = new Headers(req.headers);
    headers.delete("host");
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
    const res = await fetch(`${upstream.url}${target.pathname}${target.search}`, { method: req.method, headers, body, redirect: "manual", decompress: false });
    const out = new Headers(res.headers);
    out.delete("transfer-encoding");
    out.delete("connection");
    return new Response(req.method === "HEAD" ? null : res.body, { status: res.status, headers: out });
  }

  server = Bun.serve({
    hostname: LOOPBACK,
    port: 0,
    async fetch(req) {
      const target = new URL(req.url);
      const entry = { method: req.method, path: target.pathname, query: target.search.replace(/^\?/, ""), status: 0 };
      log.push(entry);
      let res: Response;
      const m = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(target.pathname);
      if (failure !== null) res = json(failure, { errors: [{ code: failure === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE", message: `injected fault: HTTP ${failure}` }] });
      else if (m && req.method === "GET") res = referrers(m[1]!, m[2]!, target.searchParams);
      else res = await proxy(req, target);
      entry.status = res.status;
      return res;
    },
  });
  return {
    url: url(),
    host: `${LOOPBACK}:${server.port}`,
    log,
    setFailure: (status) => {
      failure = status;
    },
    stop: async () => {
      await server?.stop(true);
    },
  };
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  const text = JSON.stringify(value);
  return new Response(text, { status, headers: { "content-type": "application/json", ...headers, "content-length": String(Buffer.byteLength(text)) } });
}

const sha256 = (bytes: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;

/**
 * Pushes a small artifact (an OCI image manifest with an empty config and one payload
 * layer) that refers to `subject`, as cosign 3 or notation would store a signature; by
 * digest, or under `tag` (the referrers tag schema: "sha256-<hex>.sig").
 */
export async function pushArtifact(upstream: Upstream, repository: string, opts: { subject: Descriptor; artifactType: string; payload: string; annotations?: Record<string, string>; tag?: string }): Promise<Descriptor & { payloadDigest: string; bytes: Uint8Array }> {
  const token = await upstream.token(`repository:${repository}:pull,push`, { username: "pusher", password: "pushpass" });
  const auth = { Authorization: `Bearer ${token}` };
  const putBlob = async (bytes: Uint8Array): Promise<string> => {
    const digest = sha256(bytes);
    const start = await fetch(`${upstream.url}/v2/${repository}/blobs/uploads/`, { method: "POST", headers: auth });
    await start.body?.cancel();
    if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`);
    const location = new URL(start.headers.get("location")!, upstream.url);
    location.searchParams.set("digest", digest);
    const done = await fetch(location, { method: "PUT", headers: { ...auth, "content-type": "application/octet-stream" }, body: bytes });
    await done.body?.cancel();
    if (done.status !== 201) throw new Error(`blob upload: HTTP ${done.status}`);
    return digest;
  };
  const empty = new TextEncoder().encode("{}");
  const payload = new TextEncoder().encode(opts.payload);
  const configDigest = await putBlob(empty);
  const payloadDigest = await putBlob(payload);
  const manifest = {
    schemaVersion: 2,
    mediaType: MT_OCI_MANIFEST,
    artifactType: opts.artifactType,
    config: { mediaType: MT_EMPTY, digest: configDigest, size: empty.byteLength },
    layers: [{ mediaType: "application/vnd.dev.ferry.test.payload", digest: payloadDigest, size: payload.byteLength }],
    subject: { mediaType: opts.subject.mediaType, digest: opts.subject.digest, size: opts.subject.size },
    ...(opts.annotations && { annotations: opts.annotations }),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const digest = sha256(bytes);
  const put = await fetch(`${upstream.url}/v2/${repository}/manifests/${opts.tag ?? digest}`, { method: "PUT", headers: { ...auth, "content-type": MT_OCI_MANIFEST }, body: bytes });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`manifest push: HTTP ${put.status}: ${text}`);
  return { mediaType: MT_OCI_MANIFEST, digest, size: bytes.byteLength, artifactType: opts.artifactType, ...(opts.annotations && { annotations: opts.annotations }), payloadDigest, bytes };
}
