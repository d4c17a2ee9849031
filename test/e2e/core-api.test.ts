// Issue 2, protocol level: ferry in front of a real distribution upstream with token
// auth and CDN redirects, asserted with plain HTTP as a client would see it, and with
// upstream request counts taken from the upstream's own access log.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, multiArch, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { sha256 } from "../harness/oci.ts";
import { waitFor } from "../harness/proc.ts";

/**
 * Waits until ferry's own record of a tag (checkedAt, from /api/repositories) is older than
 * the tag TTL: the event a revalidation waits for, read from the server, not guessed.
 */
async function waitPastTtl(f: FerryProcess, repository: string, tag: string, ttlMs: number): Promise<void> {
  const repos = (await (await fetch(`${f.url}/api/repositories`)).json()) as { repositories: { repository: string; tags: { tag: string; checkedAt: string }[] }[] };
  const checkedAt = Date.parse(repos.repositories.find((r) => r.repository === repository)!.tags.find((t) => t.tag === tag)!.checkedAt);
  await waitFor(() => Date.now() > checkedAt + ttlMs, { timeoutMs: ttlMs + 5_000, intervalMs: 20, what: `${repository}:${tag} to pass its TTL` });
}

const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const ALL = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"].join(", ");

let upstream: Upstream;
let images: { multiArch: BuiltImage; fiveLayer: BuiltImage; bigLayer: BuiltImage };
let ferry: FerryProcess;

type OciErrors = { errors: { code: string; message: string }[] };
const errorsOf = async (r: Response) => (await r.json()) as OciErrors;

function registryConfig(url: string, extra = ""): string {
  return `[[registry]]\nname = "docker.io"\nendpoints = ["${url}"]\nallow_private_redirects = true\ntimeout = "5s"\nfailure_cooldown = "1s"\n${extra}`;
}

beforeAll(async () => {
  upstream = await startUpstream();
  images = { multiArch: await multiArch(), fiveLayer: await fiveLayer(), bigLayer: await bigLayer() };
  await upstream.push(images.multiArch, "library/multi:latest");
  await upstream.push(images.fiveLayer, "library/five:latest");
  await upstream.push(images.fiveLayer, "grafana/five:1.0");
  await upstream.push(images.bigLayer, "library/big:latest");
  await upstream.push(images.fiveLayer, "private/secret:1.0");
  ferry = await startFerry({ config: registryConfig(upstream.url) });
}, 240_000);

afterAll(async () => {
  await ferry?.stop();
  await upstream?.stop();
});

describe("base and errors", () => {
  test("GET and HEAD /v2/ answer 200 with the API version header", async () => {
    for (const method of ["GET", "HEAD"]) {
      const r = await fetch(`${ferry.url}/v2/`, { method });
      expect(r.status).toBe(200);
      expect(r.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    }
  });

  test.each(["POST", "PUT", "PATCH", "DELETE"])("%s answers 405 UNSUPPORTED", async (method) => {
    const r = await fetch(`${ferry.url}/v2/library/multi/manifests/latest`, { method, body: method === "DELETE" ? undefined : "{}" });
    expect(r.status).toBe(405);
    expect((await errorsOf(r)).errors[0]!.code).toBe("UNSUPPORTED");
  });

  test("invalid names and digests get 400 with OCI error JSON, and reach no upstream", async () => {
    upstream.clearLog();
    const cases: [string, number, string][] = [
      ["/v2/UPPER/manifests/latest", 400, "NAME_INVALID"],
      ["/v2/library/x/blobs/sha256:1234", 400, "DIGEST_INVALID"],
      ["/v2/library/x/manifests/sha256:zz", 400, "DIGEST_INVALID"],
      ["/v2/library/x/manifests/-tag", 400, "TAG_INVALID"],
      ["/v2/library%2f..%2fetc/manifests/latest", 400, "NAME_INVALID"],
      ["/v2/library/a%00b/manifests/latest", 400, "NAME_INVALID"],
      ["/v2/nowhere.example.com/x/manifests/latest", 404, "NAME_UNKNOWN"],
    ];
    for (const [path, status, code] of cases) {
      const r = await fetch(ferry.url + path);
      expect({ path, status: r.status }).toEqual({ path, status });
      const body = await errorsOf(r);
      expect(body.errors[0]!.code).toBe(code);
      expect(typeof body.errors[0]!.message).toBe("string");
    }
    expect(upstream.log.length).toBe(0);
  });

  test("an unknown tag is MANIFEST_UNKNOWN (from a real upstream 404), then remembered briefly", async () => {
    upstream.clearLog();
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${ferry.url}/v2/library/multi/manifests/no-such-tag`);
      expect(r.status).toBe(404);
      expect((await errorsOf(r)).errors[0]!.code).toBe("MANIFEST_UNKNOWN");
    }
    // One real upstream 404 (a 401 token challenge before it is not an answer).
    expect(upstream.count({ server: "front", pathIncludes: "/manifests/no-such-tag", status: 404 })).toBe(1);
  });

  test("an upstream 401 reaches the client with a challenge, so docker and containerd print a clear error", async () => {
    // private/* needs credentials at the harness token service; ferry has none configured.
    const r = await fetch(`${ferry.url}/v2/private/secret/manifests/1.0`, { headers: { Accept: ALL } });
    expect(r.status).toBe(401);
    expect((await errorsOf(r)).errors[0]!.code).toBe("UNAUTHORIZED");
    expect(r.headers.get("www-authenticate")).toBe('Basic realm="ferry"');
  });

  test("an unknown blob is BLOB_UNKNOWN", async () => {
    const r = await fetch(`${ferry.url}/v2/library/multi/blobs/sha256:${"0".repeat(64)}`);
    expect(r.status).toBe(404);
    expect((await errorsOf(r)).errors[0]!.code).toBe("BLOB_UNKNOWN");
  });
});

describe("manifests", () => {
  test("tag → index with every header, identical bytes to upstream, then served without upstream", async () => {
    upstream.clearLog();
    const r = await fetch(`${ferry.url}/v2/library/multi/manifests/latest`, { headers: { Accept: ALL } });
    expect(r.status).toBe(200);
    const body = new Uint8Array(await r.arrayBuffer());
    expect(r.headers.get("docker-content-digest")).toBe(images.multiArch.manifestDigest);
    expect(sha256(body)).toBe(images.multiArch.manifestDigest);
    expect(r.headers.get("content-type")).toBe(images.multiArch.mediaType);
    expect(Number(r.headers.get("content-length"))).toBe(body.byteLength);
    const head = await fetch(`${ferry.url}/v2/multi/manifests/latest`, { method: "HEAD", headers: { Accept: ALL } });
    expect(head.status).toBe(200);
    expect(head.headers.get("docker-content-digest")).toBe(images.multiArch.manifestDigest);
    expect(Number(head.headers.get("content-length"))).toBe(body.byteLength);
    // Within the tag TTL: no further upstream manifest requests.
    const before = upstream.count({ server: "front", pathIncludes: "/manifests/" });
    for (let i = 0; i < 5; i++) await fetch(`${ferry.url}/v2/library/multi/manifests/latest`, { headers: { Accept: ALL } }).then((x) => x.arrayBuffer());
    expect(upstream.count({ server: "front", pathIncludes: "/manifests/" })).toBe(before);
  });

  test("by digest: child manifests verified and served with their own media type", async () => {
    for (const m of images.multiArch.manifests) {
      const r = await fetch(`${ferry.url}/v2/library/multi/manifests/${m.digest}`, { headers: { Accept: ALL } });
      expect(r.status).toBe(200);
      expect(sha256(await r.arrayBuffer())).toBe(m.digest);
      expect(r.headers.get("content-type")).toBe(m.mediaType);
    }
  });

  test("a client whose Accept excludes the cached index gets what upstream serves for its Accept, and the tag stays whole for everyone else", async () => {
    // The tag is cached (the first test pulled it with the full Accept).
    upstream.clearLog();
    const r = await fetch(`${ferry.url}/v2/library/multi/manifests/latest`, { headers: { Accept: DOCKER_MANIFEST } });
    // distribution 2.8: "OCI index found, but accept header does not support OCI indexes".
    expect(r.status).toBe(404);
    expect((await errorsOf(r)).errors[0]!.code).toBe("MANIFEST_UNKNOWN");
    expect(upstream.count({ server: "front", method: "GET", pathIncludes: "/manifests/latest", status: 404 })).toBe(1);
    // That 404 was about that client's Accept, not about the tag.
    const full = await fetch(`${ferry.url}/v2/library/multi/manifests/latest`, { headers: { Accept: ALL } });
    expect(full.status).toBe(200);
    expect(full.headers.get("content-type")).toBe(OCI_INDEX);
    expect(full.headers.get("docker-content-digest")).toBe(images.multiArch.manifestDigest);
    expect(sha256(await full.arrayBuffer())).toBe(images.multiArch.manifestDigest);
  });

  test("two-component Docker Hub names and the explicit docker.io prefix", async () => {
    for (const name of ["grafana/five", "docker.io/grafana/five"]) {
      const r = await fetch(`${ferry.url}/v2/${name}/manifests/1.0`, { headers: { Accept: ALL } });
      expect(r.status).toBe(200);
      expect(r.headers.get("docker-content-digest")).toBe(images.fiveLayer.manifestDigest);
    }
  });
});

describe("blobs", () => {
  test("HEAD on an uncached blob asks upstream with HEAD and downloads nothing", async () => {
    upstream.clearLog();
    const blob = images.bigLayer.blobs.at(-1)!;
    const r = await fetch(`${ferry.url}/v2/library/big/blobs/${blob.digest}`, { method: "HEAD" });
    expect(r.status).toBe(200);
    expect(Number(r.headers.get("content-length"))).toBe(blob.size);
    expect(r.headers.get("docker-content-digest")).toBe(blob.digest);
    expect(upstream.count({ server: "cdn" })).toBe(0);
  });

  test("concurrent cold GETs share one upstream download; Range on the cold blob is 206", async () => {
    upstream.clearLog();
    const blob = images.bigLayer.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const url = `${ferry.url}/v2/library/big/blobs/${blob.digest}`;
    const ranged = fetch(url, { headers: { Range: "bytes=1048576-2097151" } });
    // Bytes stream as they arrive (Bun.serve sends such bodies chunked: oven-sh/bun#10507).
    const full = Array.from({ length: 6 }, () =>
      fetch(url).then(async (r) => {
        const bytes = await r.arrayBuffer();
        return { status: r.status, length: bytes.byteLength, digest: sha256(bytes) };
      }),
    );
    const r = await ranged;
    expect(r.status).toBe(206);
    expect(r.headers.get("content-range")).toBe(`bytes 1048576-2097151/${blob.size}`);
    expect((await r.arrayBuffer()).byteLength).toBe(1048576);
    for (const result of await Promise.all(full)) expect(result).toEqual({ status: 200, length: blob.size, digest: blob.digest });
    expect(upstream.count({ server: "cdn", method: "GET", pathIncludes: blob.digest.slice(7) })).toBe(1);
    // The CDN never sees the registry's token.
    expect(upstream.log.filter((e) => e.server === "cdn" && e.headers.authorization).length).toBe(0);
  }, 60_000);

  test("warm blob: 200 with Accept-Ranges, Range → 206, bad Range → 416", async () => {
    const blob = images.bigLayer.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const url = `${ferry.url}/v2/library/big/blobs/${blob.digest}`;
    upstream.clearLog();
    const head = await fetch(url, { method: "HEAD" });
    expect(head.headers.get("accept-ranges")).toBe("bytes");
    expect(Number(head.headers.get("content-length"))).toBe(blob.size);
    const warm = await fetch(url);
    expect(Number(warm.headers.get("content-length"))).toBe(blob.size);
    expect(sha256(await warm.arrayBuffer())).toBe(blob.digest);
    expect(head.headers.get("docker-content-digest")).toBe(blob.digest);
    const r = await fetch(url, { headers: { Range: "bytes=-100" } });
    expect(r.status).toBe(206);
    expect(r.headers.get("content-range")).toBe(`bytes ${blob.size - 100}-${blob.size - 1}/${blob.size}`);
    expect((await r.arrayBuffer()).byteLength).toBe(100);
    const bad = await fetch(url, { headers: { Range: `bytes=${blob.size}-` } });
    expect(bad.status).toBe(416);
    expect((await errorsOf(bad)).errors[0]!.code).toBe("RANGE_INVALID");
    expect(upstream.log.length).toBe(0);
  });

  test("a client that disconnects mid-stream breaks neither the cache nor other clients", async () => {
    const image = images.fiveLayer;
    const blob = image.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const url = `${ferry.url}/v2/library/five/blobs/${blob.digest}`;
    const quitter = new AbortController();
    const first = await fetch(url, { signal: quitter.signal });
    const reader = first.body!.getReader();
    await reader.read();
    const other = fetch(url).then(async (r) => sha256(await r.arrayBuffer()));
    quitter.abort();
    expect(await other).toBe(blob.digest);
    const again = await fetch(url);
    expect(sha256(await again.arrayBuffer())).toBe(blob.digest);
  });
});

describe("tags and catalog", () => {
  test("tags/list with n/last pagination", async () => {
    await upstream.push(images.fiveLayer, "library/five:a");
    await upstream.push(images.fiveLayer, "library/five:b");
    const all = (await (await fetch(`${ferry.url}/v2/library/five/tags/list`)).json()) as { tags: string[] };
    expect(all.tags).toEqual(["a", "b", "latest"]);
    const p1 = await fetch(`${ferry.url}/v2/library/five/tags/list?n=2`);
    expect(((await p1.json()) as { tags: string[] }).tags).toEqual(["a", "b"]);
    expect(p1.headers.get("link")).toContain("last=b");
    const p2 = (await (await fetch(`${ferry.url}/v2/library/five/tags/list?n=2&last=b`)).json()) as { tags: string[] };
    expect(p2.tags).toEqual(["latest"]);
  });

  test("_catalog lists what is cached", async () => {
    const body = (await (await fetch(`${ferry.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(body.repositories).toEqual(expect.arrayContaining(["library/multi", "grafana/five"]));
    const p = await fetch(`${ferry.url}/v2/_catalog?n=1`);
    expect(((await p.json()) as { repositories: string[] }).repositories.length).toBe(1);
    expect(p.headers.get("link")).toContain("n=1");
  });
});

describe("integrity and failure", () => {
  /** A fresh ferry in front of an upstream that serves a blob of library/corrupt with wrong bytes. */
  async function withCorruptBlob(run: (fresh: FerryProcess, blob: { digest: string; size: number }) => Promise<void>): Promise<void> {
    const image = images.fiveLayer;
    await upstream.push(image, "library/corrupt:latest");
    const blob = image.blobs.find((b) => b.size > 1000)!;
    const fresh = await startFerry({ config: registryConfig(upstream.url) });
    try {
      await upstream.setFault({ kind: "corrupt" });
      await run(fresh, blob);
    } finally {
      await upstream.setFault(null);
      await fresh.stop();
    }
  }

  test("an upstream serving wrong bytes fails the pull and leaves nothing in the cache", () =>
    withCorruptBlob(async (fresh, blob) => {
      // The client sees a failure: the connection drops before the headers (a small blob)
      // or before the last byte (a larger one). Never a complete, wrong body.
      let failed = false;
      let got: string | undefined;
      try {
        const r = await fetch(`${fresh.url}/v2/library/corrupt/blobs/${blob.digest}`);
        got = sha256(await r.arrayBuffer());
      } catch {
        failed = true;
      }
      expect(failed || got !== blob.digest).toBe(true);
      expect(failed).toBe(true); // the stream is failed before its last byte
      await upstream.setFault(null);
      // The failed download cleans up after itself: wait for its temp file to go.
      await waitFor(() => readdirSync(join(fresh.cacheDir, "tmp")).length === 0, { what: "the corrupt download's temp file to be removed" });
      const blobsDir = join(fresh.cacheDir, "blobs", "docker.io", "sha256", blob.digest.slice(7, 9));
      expect(existsSync(join(blobsDir, blob.digest.slice(7)))).toBe(false);
      expect(readdirSync(join(fresh.cacheDir, "tmp")).length).toBe(0);
      // With the fault gone the same blob is fetched again and is right.
      const ok = await fetch(`${fresh.url}/v2/library/corrupt/blobs/${blob.digest}`);
      expect(sha256(await ok.arrayBuffer())).toBe(blob.digest);
    }));

  test("a Range of only a corrupt blob's last byte is a 502 saying the upstream's bytes were wrong, never a 500", () =>
    withCorruptBlob(async (fresh, blob) => {
      // That byte goes out only once the whole blob is verified, so the answer waits for the verdict.
      const r = await fetch(`${fresh.url}/v2/library/corrupt/blobs/${blob.digest}`, { headers: { Range: `bytes=${blob.size - 1}-${blob.size - 1}` } });
      const body = (await r.json()) as { errors: { code: string; message: string }[] };
      expect({ status: r.status, code: body.errors[0]!.code }).toEqual({ status: 502, code: "UNAVAILABLE" });
      expect(body.errors[0]!.message).toContain("digest mismatch");
    }));

  test("upstream 429 on a never-seen tag is 429 TOOMANYREQUESTS with Retry-After, never 500", async () => {
    const fresh = await startFerry({ config: registryConfig(upstream.url) });
    try {
      await upstream.setFault({ kind: "status", status: 429, retryAfter: 7, match: /\/manifests\// });
      const r = await fetch(`${fresh.url}/v2/library/multi/manifests/latest`);
      expect(r.status).toBe(429);
      expect(r.headers.get("retry-after")).toBe("7");
      expect((await errorsOf(r)).errors[0]!.code).toBe("TOOMANYREQUESTS");
    } finally {
      await upstream.setFault(null);
      await fresh.stop();
    }
  });

  test("an unreachable upstream on a never-seen tag is 503 UNAVAILABLE", async () => {
    const fresh = await startFerry({ config: registryConfig("http://127.0.0.1:1") });
    try {
      const r = await fetch(`${fresh.url}/v2/library/multi/manifests/latest`);
      expect(r.status).toBe(503);
      expect((await errorsOf(r)).errors[0]!.code).toBe("UNAVAILABLE");
    } finally {
      await fresh.stop();
    }
  });

  test("stale-if-error: past the tag TTL with upstream failing, the cached mapping is served", async () => {
    const short = await startFerry({ config: registryConfig(upstream.url), tagTtl: "1s" });
    try {
      const first = await fetch(`${short.url}/v2/library/five/manifests/latest`, { headers: { Accept: ALL } });
      expect(first.headers.get("docker-content-digest")).toBe(images.fiveLayer.manifestDigest);
      await waitPastTtl(short, "library/five", "latest", 1_000);
      // Revalidation is a HEAD, not a GET, and an unchanged digest costs nothing more.
      upstream.clearLog();
      const second = await fetch(`${short.url}/v2/library/five/manifests/latest`, { headers: { Accept: ALL } });
      expect(second.status).toBe(200);
      expect(upstream.count({ server: "front", method: "HEAD", pathIncludes: "/manifests/latest" })).toBe(1);
      expect(upstream.count({ server: "front", method: "GET", pathIncludes: "/manifests/" })).toBe(0);
      await waitPastTtl(short, "library/five", "latest", 1_000);
      await upstream.setFault({ kind: "status", status: 503, match: /\/manifests\// });
      const stale = await fetch(`${short.url}/v2/library/five/manifests/latest`, { headers: { Accept: ALL } });
      expect(stale.status).toBe(200);
      expect(stale.headers.get("docker-content-digest")).toBe(images.fiveLayer.manifestDigest);
      expect(await short.waitForLog("stale-if-error")).toBe(true);
      expect(await short.waitForLog('"cache":"stale"')).toBe(true);
    } finally {
      await upstream.setFault(null);
      await short.stop();
    }
  });

  test("the cache survives a restart and is served with the upstream unreachable", async () => {
    const cacheDir = join(ferry.dir, "..", `ferry-restart-${process.pid}`);
    const a = await startFerry({ config: registryConfig(upstream.url), cacheDir });
    const digests: string[] = [];
    for (const b of images.fiveLayer.blobs) {
      const r = await fetch(`${a.url}/v2/library/five/blobs/${b.digest}`);
      digests.push(sha256(await r.arrayBuffer()));
    }
    await fetch(`${a.url}/v2/library/five/manifests/latest`, { headers: { Accept: ALL } }).then((r) => r.arrayBuffer());
    await a.stop();
    const b = await startFerry({ config: registryConfig("http://127.0.0.1:1"), cacheDir, tagTtl: "1s" });
    try {
      await waitPastTtl(b, "library/five", "latest", 1_000); // past the TTL: the revalidation fails and the mapping is served stale
      const m = await fetch(`${b.url}/v2/library/five/manifests/latest`, { headers: { Accept: ALL } });
      expect(m.status).toBe(200);
      expect(m.headers.get("docker-content-digest")).toBe(images.fiveLayer.manifestDigest);
      for (const blob of images.fiveLayer.blobs) {
        const r = await fetch(`${b.url}/v2/library/five/blobs/${blob.digest}`);
        expect(sha256(await r.arrayBuffer())).toBe(blob.digest);
      }
    } finally {
      await b.stop();
      require("node:fs").rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("a crash mid-download leaves no half blob that is later served", async () => {
    const cacheDir = join(ferry.dir, "..", `ferry-crash-${process.pid}`);
    const blob = images.bigLayer.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const a = await startFerry({ config: registryConfig(upstream.url), cacheDir });
    const r = await fetch(`${a.url}/v2/library/big/blobs/${blob.digest}`);
    const reader = r.body!.getReader();
    let got = 0;
    while (got < 4 * 1024 * 1024) {
      const { value, done } = await reader.read();
      if (done) break;
      got += value.byteLength;
    }
    await a.stop("SIGKILL");
    await reader.cancel().catch(() => {});
    const b = await startFerry({ config: registryConfig(upstream.url), cacheDir });
    try {
      expect(readdirSync(join(cacheDir, "tmp")).length).toBe(0);
      const again = await fetch(`${b.url}/v2/library/big/blobs/${blob.digest}`);
      expect(sha256(await again.arrayBuffer())).toBe(blob.digest);
    } finally {
      await b.stop();
      require("node:fs").rmSync(cacheDir, { recursive: true, force: true });
    }
  }, 60_000);
});
