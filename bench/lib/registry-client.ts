// Registry pulls as docker/containerd do them, on the raw client of http.ts:
// Bearer token dance (401 → realm → retry), redirects followed without Authorization
// to another host:port, manifests by tag then by digest, then blobs.
import { request, type HttpRequest, type HttpResponse } from "./http.ts";

export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

const MAX_REDIRECTS = 5;

/** A client for one registry base URL; remembers its token per scope like docker does. */
export class RegistryClient {
  private readonly tokens = new Map<string, string>();

  constructor(
    readonly base: string,
    private readonly timeoutMs = 300_000,
    /** Every request (token, redirects included) through this forward proxy. */
    private readonly proxy?: string,
  ) {}

  /** A request that answers a Bearer challenge once and follows redirects. */
  async send(path: string, opts: Omit<HttpRequest, "url"> & { scope?: string } = {}): Promise<HttpResponse & { redirects: number }> {
    let url = this.base + path;
    const origin = new URL(url).host;
    const baseHeaders = { ...(opts.headers ?? {}) };
    const token = opts.scope ? this.tokens.get(opts.scope) : undefined;
    let authorization = token ? `Bearer ${token}` : undefined;
    let answeredChallenge = false;
    for (let hop = 0; hop <= MAX_REDIRECTS + 1; hop++) {
      const sameHost = new URL(url).host === origin;
      const headers = { ...baseHeaders, ...(authorization && sameHost ? { Authorization: authorization } : {}) };
      const res = await request({ ...opts, url, headers, timeoutMs: opts.timeoutMs ?? this.timeoutMs, proxy: this.proxy });
      if (res.status === 401 && !answeredChallenge && sameHost && res.headers["www-authenticate"]) {
        answeredChallenge = true;
        const tok = await this.fetchToken(res.headers["www-authenticate"]);
        if (opts.scope) this.tokens.set(opts.scope, tok);
        authorization = `Bearer ${tok}`;
        hop--;
        continue;
      }
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        if (hop >= MAX_REDIRECTS) throw new Error(`too many redirects: ${path}`);
        url = new URL(res.headers.location, url).toString();
        continue;
      }
      return { ...res, redirects: hop };
    }
    throw new Error(`request loop: ${path}`);
  }

  private async fetchToken(challenge: string): Promise<string> {
    const params: Record<string, string> = {};
    for (const m of challenge.matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!;
    if (!params.realm) throw new Error(`not a Bearer challenge: ${challenge}`);
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set("service", params.service);
    if (params.scope) u.searchParams.set("scope", params.scope);
    const res = await request({ url: u.toString(), keepBody: true, timeoutMs: 30_000, proxy: this.proxy });
    if (res.status !== 200) throw new Error(`token ${u} → ${res.status}`);
    const body = JSON.parse(new TextDecoder().decode(res.body)) as { token?: string; access_token?: string };
    const tok = body.token ?? body.access_token;
    if (!tok) throw new Error("token response without a token");
    return tok;
  }
}

export interface PullStep {
  what: string;
  status: number;
  bytes: number;
  ms: number;
  firstByteMs?: number;
  firstByteEpochMs?: number;
  startEpochMs: number;
}

export interface PullResult {
  totalMs: number;
  steps: PullStep[];
  /** The largest layer's step (the one whose first byte matters). */
  bigLayer?: PullStep;
  manifestDigests: string[];
}

interface ManifestJson {
  mediaType?: string;
  manifests?: { digest: string; platform?: { os?: string; architecture?: string } }[];
  config?: { digest: string; size: number };
  layers?: { digest: string; size: number }[];
}

/**
 * A docker-style pull of repo:tag: HEAD the tag, GET the manifest by digest (and the
 * linux/amd64 one if it is an index), then the config and every layer, one at a time.
 * `headFirst: false` GETs the tag directly (what skopeo/crane do).
 */
export async function pull(client: RegistryClient, repo: string, tag: string, opts: { headFirst?: boolean } = {}): Promise<PullResult> {
  const t0 = performance.now();
  const steps: PullStep[] = [];
  const scope = `repository:${repo}:pull`;
  const record = (what: string, r: HttpResponse): PullStep => {
    const s: PullStep = { what, status: r.status, bytes: r.bytes, ms: r.totalMs, firstByteMs: r.firstByteMs, firstByteEpochMs: r.firstByteEpochMs, startEpochMs: r.startEpochMs };
    steps.push(s);
    if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status}`);
    return s;
  };
  const manifestDigests: string[] = [];
  let digest = tag;
  if (opts.headFirst !== false) {
    const head = await client.send(`/v2/${repo}/manifests/${tag}`, { method: "HEAD", headers: { Accept: MANIFEST_ACCEPT }, scope });
    record(`HEAD manifest ${tag}`, head);
    digest = head.headers["docker-content-digest"] ?? "";
    if (!digest.startsWith("sha256:")) throw new Error(`HEAD ${repo}:${tag} gave no digest`);
  }
  const getManifest = async (ref: string): Promise<ManifestJson> => {
    const r = await client.send(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: MANIFEST_ACCEPT }, scope, keepBody: true, maxBodyBytes: 4 << 20 });
    record(`GET manifest ${ref.slice(0, 19)}`, r);
    manifestDigests.push(r.headers["docker-content-digest"] ?? ref);
    return JSON.parse(new TextDecoder().decode(r.body)) as ManifestJson;
  };
  let manifest = await getManifest(digest);
  if (manifest.manifests) {
    const pick = manifest.manifests.find((m) => m.platform?.os === "linux" && m.platform?.architecture === "amd64") ?? manifest.manifests[0];
    if (!pick) throw new Error("empty index");
    manifest = await getManifest(pick.digest);
  }
  const blobs = [...(manifest.config ? [{ ...manifest.config, what: "config" }] : []), ...(manifest.layers ?? []).map((l, i) => ({ ...l, what: `layer ${i}` }))];
  let bigLayer: PullStep | undefined;
  let bigSize = -1;
  for (const b of blobs) {
    const r = await client.send(`/v2/${repo}/blobs/${b.digest}`, { scope });
    const s = record(`GET ${b.what}`, r);
    if (r.bytes !== b.size) throw new Error(`${b.what} ${b.digest}: got ${r.bytes} bytes, expected ${b.size}`);
    if (b.what !== "config" && b.size > bigSize) {
      bigSize = b.size;
      bigLayer = s;
    }
  }
  return { totalMs: performance.now() - t0, steps, bigLayer, manifestDigests };
}
