// Self-test of test/harness/upstream.ts and images.ts: the Docker-Hub-like
// upstream (distribution 2.8 + token server + front + CDN) behaves as the
// ferry e2e tests assume, checked with plain fetch and one real Go client.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALL_MANIFEST_TYPES, MT, bigLayer, fiveLayer, multiArch, readBlob, sha256Digest, type BuiltImage } from "../harness/images.ts";
import { fetchToken, ociFetch, parseBearerChallenge } from "../harness/oci-client.ts";
import { pidAlive, portOpen, run } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let up: Upstream;
let images: { multiOci: BuiltImage; multiDocker: BuiltImage; five: BuiltImage; big: BuiltImage };

const REFS = {
  multiOci: "library/multi:latest",
  multiDocker: "library/multi-docker:latest",
  five: "library/five:latest",
  big: "library/big:latest",
} as const;

const sha256 = (b: ArrayBuffer | Uint8Array) => sha256Digest(new Uint8Array(b));

/** Decode a JWT's header and claims without verifying (distribution does that). */
function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h = "", c = ""] = token.split(".");
  const dec = (s: string) => JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as Record<string, unknown>;
  return { header: dec(h), claims: dec(c) };
}

/** Read a body until it ends, errors, or `idleMs` pass without data. Bounded in time. */
async function drain(res: Response, idleMs = 1500): Promise<{ bytes: number; error?: string; idle?: boolean }> {
  const reader = res.body!.getReader();
  let bytes = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<"idle">((r) => (timer = setTimeout(() => r("idle"), idleMs)));
    try {
      const next = await Promise.race([reader.read(), idle]);
      if (next === "idle") {
        await reader.cancel().catch(() => {});
        return { bytes, idle: true };
      }
      if (next.done) return { bytes };
      bytes += next.value.byteLength;
    } catch (e) {
      return { bytes, error: String(e) };
    } finally {
      clearTimeout(timer);
    }
  }
  throw new Error("drain: deadline exceeded");
}

const biggestBlob = (img: BuiltImage) => img.blobs.reduce((a, b) => (a.size > b.size ? a : b));

/** 307 Location of a front blob GET (anonymous token for a public repo). */
async function cdnLocation(repo: string, digest: string): Promise<string> {
  const r = await ociFetch(`${up.url}/v2/${repo}/blobs/${digest}`);
  expect(r.status).toBe(307);
  const loc = r.headers.get("location");
  expect(loc).toBeTruthy();
  return loc!;
}

beforeAll(async () => {
  const [multiOci, multiDocker, five, big] = await Promise.all([
    multiArch(),
    multiArch({ format: "docker" }),
    fiveLayer(),
    bigLayer(),
  ]);
  images = { multiOci, multiDocker, five, big };
  up = await startUpstream();
  for (const key of Object.keys(REFS) as (keyof typeof REFS)[]) {
    const res = await up.push(images[key], REFS[key]);
    expect(res.digest).toBe(images[key].manifestDigest);
  }
  await up.push(five, "private/secret:1.0");
}, 60_000);

afterAll(async () => {
  await up?.stop();
});

describe("images", () => {
  test("layouts are consistent: blobs hash to their digests, configs list the diff_ids", () => {
    for (const img of Object.values(images)) {
      expect(sha256(readBlob(img, img.manifestDigest))).toBe(img.manifestDigest);
      for (const b of img.blobs) expect(sha256(readBlob(img, b.digest))).toBe(b.digest);
      for (const m of img.manifests) {
        const cfg = JSON.parse(Buffer.from(readBlob(img, m.configDigest)).toString()) as {
          architecture: string;
          os: string;
          rootfs: { diff_ids: string[] };
        };
        expect(cfg.rootfs.diff_ids).toEqual(m.layers.map((l) => l.diffId));
        expect(cfg.architecture).toBe(m.platform!.architecture);
        expect(cfg.os).toBe("linux");
      }
    }
    expect(images.multiOci.mediaType).toBe(MT.ociIndex);
    expect(images.multiOci.indexDigest).toBe(images.multiOci.manifestDigest);
    expect(images.multiOci.manifests.map((m) => m.platform?.architecture)).toEqual(["amd64", "arm64"]);
    expect(images.multiDocker.mediaType).toBe(MT.dockerList);
    expect(images.five.mediaType).toBe(MT.dockerManifest);
    expect(images.five.manifests[0]!.layers).toHaveLength(5);
    expect(images.five.manifests[0]!.layers.every((l) => l.mediaType === MT.dockerLayerGzip)).toBe(true);
    expect(biggestBlob(images.big).size).toBeGreaterThan(100 * 1024 * 1024);
  });

  test("builds are deterministic (a second call returns the same digests)", async () => {
    expect((await fiveLayer()).manifestDigest).toBe(images.five.manifestDigest);
    expect((await multiArch({ format: "docker" })).manifestDigest).toBe(images.multiDocker.manifestDigest);
  });
});

describe("auth", () => {
  test("anonymous GET /v2/ on the front is 401 with the Docker Hub style challenge", async () => {
    const r = await fetch(`${up.url}/v2/`);
    expect(r.status).toBe(401);
    const port = new URL(up.tokenUrl).port;
    expect(r.headers.get("www-authenticate")).toBe(`Bearer realm="http://127.0.0.1:${port}/token",service="registry.test"`);
  });

  test("token server: claims, x5c header, grants per user, wrong password → 401", async () => {
    const tok = await up.token(["repository:library/five:pull,push", "repository:private/secret:pull"]);
    const { header, claims } = decodeJwt(tok);
    expect(header.alg).toBe("ES256");
    expect(Array.isArray(header.x5c)).toBe(true);
    expect(claims).toMatchObject({ iss: "ferry-test-issuer", aud: "registry.test", sub: "" });
    expect(typeof claims.jti).toBe("string");
    expect((claims.exp as number) - (claims.iat as number)).toBe(300);
    expect(claims.access).toEqual([
      { type: "repository", name: "library/five", actions: ["pull"] },
      { type: "repository", name: "private/secret", actions: [] },
    ]);

    const pushTok = await up.token("repository:private/secret:pull,push", { username: "pusher", password: "pushpass" });
    expect(decodeJwt(pushTok).claims.access).toEqual([{ type: "repository", name: "private/secret", actions: ["pull", "push"] }]);

    const raw = await fetch(`${up.tokenUrl}?service=registry.test&scope=repository:library/five:pull`);
    const body = (await raw.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["access_token", "expires_in", "issued_at", "token"]);
    expect(body.expires_in).toBe(300);

    const bad = await fetch(`${up.tokenUrl}?service=registry.test&scope=repository:library/five:pull`, {
      headers: { authorization: `Basic ${btoa("pusher:wrong")}` },
    });
    expect(bad.status).toBe(401);

    // containerd-style OAuth2 POST with a password grant.
    const post = await fetch(up.tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "password",
        username: "reader",
        password: "readpass",
        service: "registry.test",
        scope: "repository:private/secret:pull",
        client_id: "test",
      }),
    });
    expect(post.status).toBe(200);
    const postTok = ((await post.json()) as { access_token: string }).access_token;
    expect(decodeJwt(postTok).claims.access).toEqual([{ type: "repository", name: "private/secret", actions: ["pull"] }]);
  });

  test("private/ repositories: anonymous is refused by the registry, reader may pull", async () => {
    const anon = await ociFetch(`${up.url}/v2/private/secret/manifests/1.0`, { headers: { accept: ALL_MANIFEST_TYPES.join(",") } });
    expect(anon.status).toBe(401);
    const reader = await ociFetch(`${up.url}/v2/private/secret/manifests/1.0`, {
      headers: { accept: ALL_MANIFEST_TYPES.join(",") },
      creds: { username: "reader", password: "readpass" },
    });
    expect(reader.status).toBe(200);
    expect(reader.headers.get("docker-content-digest")).toBe(images.five.manifestDigest);
  });
});

describe("manifests through the front", () => {
  const cases: [keyof typeof REFS, string][] = [
    ["multiOci", MT.ociIndex],
    ["multiOci", ALL_MANIFEST_TYPES.join(", ")],
    ["multiDocker", MT.dockerList],
    ["multiDocker", ALL_MANIFEST_TYPES.join(", ")],
    ["five", MT.dockerManifest],
    ["five", ALL_MANIFEST_TYPES.join(", ")],
    ["big", MT.ociManifest],
  ];
  test.each(cases)("%s by tag with Accept %s → pushed digest", async (key, accept) => {
    const img = images[key];
    const [name, tag] = REFS[key].split(":");
    // Real token flow: 401 challenge with scope, token from the realm, retry.
    const challenge = await fetch(`${up.url}/v2/${name}/manifests/${tag}`, { headers: { accept } });
    expect(challenge.status).toBe(401);
    const ch = parseBearerChallenge(challenge.headers.get("www-authenticate"));
    expect(ch?.scope).toBe(`repository:${name}:pull`);
    const token = await fetchToken(ch!);
    for (const method of ["HEAD", "GET"]) {
      const r = await fetch(`${up.url}/v2/${name}/manifests/${tag}`, {
        method,
        headers: { accept, authorization: `Bearer ${token}` },
      });
      expect(r.status).toBe(200);
      expect(r.headers.get("docker-content-digest")).toBe(img.manifestDigest);
      expect(r.headers.get("content-type")).toBe(img.mediaType);
      expect(Number(r.headers.get("content-length"))).toBe(img.manifestSize);
      if (method === "GET") expect(sha256(await r.arrayBuffer())).toBe(img.manifestDigest);
    }
  });

  test("platform manifests by digest", async () => {
    for (const key of ["multiOci", "multiDocker"] as const) {
      const name = REFS[key].split(":")[0];
      for (const m of images[key].manifests) {
        const r = await ociFetch(`${up.url}/v2/${name}/manifests/${m.digest}`, { headers: { accept: m.mediaType } });
        expect(r.status).toBe(200);
        expect(r.headers.get("content-type")).toBe(m.mediaType);
        expect(sha256(await r.arrayBuffer())).toBe(m.digest);
      }
    }
  });
});

describe("blobs: front redirect and CDN", () => {
  test("GET → 307 to the CDN; HEAD is proxied; no token → 401; unknown → 404", async () => {
    const blob = images.five.manifests[0]!.layers[2]!;
    const loc = new URL(await cdnLocation("library/five", blob.digest));
    expect(loc.origin).toBe(up.cdnUrl);
    expect(loc.pathname).toBe(`/blobs/${blob.digest}`);
    expect(loc.searchParams.get("sig")).toBeTruthy();
    expect(Number(loc.searchParams.get("exp"))).toBeGreaterThan(Date.now() / 1000);

    const head = await ociFetch(`${up.url}/v2/library/five/blobs/${blob.digest}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe(blob.size);
    expect(head.headers.get("docker-content-digest")).toBe(blob.digest);

    const noAuth = await fetch(`${up.url}/v2/library/five/blobs/${blob.digest}`, { redirect: "manual" });
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers.get("www-authenticate")).toContain("repository:library/five:pull");

    const missing = await ociFetch(`${up.url}/v2/library/five/blobs/sha256:${"0".repeat(64)}`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("BLOB_UNKNOWN");
  });

  test("CDN: Authorization → 400 XML; without → right bytes; Range → 206; HEAD; bad/expired sig → 403", async () => {
    const blob = images.five.manifests[0]!.layers[4]!;
    const loc = await cdnLocation("library/five", blob.digest);

    const withAuth = await fetch(loc, { headers: { authorization: "Bearer abc" } });
    expect(withAuth.status).toBe(400);
    expect(await withAuth.text()).toContain("<Code>InvalidArgument</Code>");

    const ok = await fetch(loc);
    expect(ok.status).toBe(200);
    expect(Number(ok.headers.get("content-length"))).toBe(blob.size);
    expect(sha256(await ok.arrayBuffer())).toBe(blob.digest);

    const ranged = await fetch(loc, { headers: { range: "bytes=10-109" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 10-109/${blob.size}`);
    const part = new Uint8Array(await ranged.arrayBuffer());
    expect(Buffer.from(part).equals(Buffer.from(readBlob(images.five, blob.digest).subarray(10, 110)))).toBe(true);

    const suffix = await fetch(loc, { headers: { range: "bytes=-5" } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get("content-range")).toBe(`bytes ${blob.size - 5}-${blob.size - 1}/${blob.size}`);
    expect((await suffix.arrayBuffer()).byteLength).toBe(5);

    const unsat = await fetch(loc, { headers: { range: `bytes=${blob.size}-` } });
    expect(unsat.status).toBe(416);
    await unsat.arrayBuffer();

    const head = await fetch(loc, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe(blob.size);

    const tampered = loc.replace(/sig=[^&]+/, "sig=AAAA");
    expect((await fetch(tampered)).status).toBe(403);
    const expired = await fetch(up.cdnUrlFor(blob.digest, -10));
    expect(expired.status).toBe(403);
    expect(await expired.text()).toContain("Request has expired");
  });

  test("a real Go client (skopeo) pulls through the front, following the redirect without leaking its token", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-skopeo-pull-"));
    try {
      up.clearLog();
      // dir: keeps manifests and blobs byte for byte (oci: would convert the Docker manifest).
      await run(["skopeo", "copy", "--src-tls-verify=false", `docker://${up.host}/${REFS.five}`, `dir:${dir}`], { timeoutMs: 30_000 });
      expect(sha256(readFileSync(join(dir, "manifest.json")))).toBe(images.five.manifestDigest);
      for (const b of images.five.blobs) {
        const file = join(dir, b.digest.slice(7));
        expect(existsSync(file)).toBe(true);
        expect(sha256(readFileSync(file))).toBe(b.digest);
      }
      expect(up.count({ server: "front", status: 307 })).toBe(images.five.blobs.length);
      expect(up.count({ server: "cdn", method: "GET", status: 200 })).toBe(images.five.blobs.length);
      expect(up.entries({ server: "cdn" }).every((e) => !e.headers.authorization)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("access log", () => {
  test("count() filters by server, method, path, status; clearLog() empties in place", async () => {
    up.clearLog();
    expect(up.log).toHaveLength(0);
    const blob = images.five.manifests[0]!.layers[0]!;
    const r = await ociFetch(`${up.url}/v2/library/five/manifests/latest`, { headers: { accept: MT.dockerManifest } });
    await r.arrayBuffer();
    const loc = await cdnLocation("library/five", blob.digest);
    await (await fetch(loc, { headers: { range: "bytes=0-9" } })).arrayBuffer();

    expect(up.count({ server: "front", method: "GET", pathIncludes: "/manifests/latest" })).toBe(2); // 401 + 200
    expect(up.count({ server: "front", pathIncludes: "/manifests/", status: 200 })).toBe(1);
    expect(up.count({ server: "token" })).toBe(2);
    expect(up.count({ server: "front", pathRegex: /\/blobs\/sha256:/, status: [307] })).toBe(1);
    const cdn = up.entries({ server: "cdn" });
    expect(cdn).toHaveLength(1);
    expect(cdn[0]).toMatchObject({ method: "GET", status: 206, bytes: 10, headers: { authorization: false, range: "bytes=0-9" } });
    expect(cdn[0]!.query).toContain("sig=");
    const manifest = up.entries({ server: "front", status: 200 })[0]!;
    expect(manifest.headers).toMatchObject({ authorization: true, accept: MT.dockerManifest });
    expect(manifest.bytes).toBe(images.five.manifestSize);
    const log = up.log;
    up.clearLog();
    expect(log).toHaveLength(0);
  });
});

describe("faults", () => {
  test("status 429 with Retry-After on matching front paths; others unaffected; times limits it", async () => {
    await up.setFault({ kind: "status", status: 429, retryAfter: 7, match: /\/manifests\// });
    try {
      const r = await fetch(`${up.url}/v2/library/five/manifests/latest`);
      expect(r.status).toBe(429);
      expect(r.headers.get("retry-after")).toBe("7");
      expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("TOOMANYREQUESTS");
      expect((await fetch(`${up.url}/v2/`)).status).toBe(401);

      await up.setFault({ kind: "status", status: 503, times: 1 });
      expect((await fetch(`${up.url}/v2/`)).status).toBe(503);
      expect((await fetch(`${up.url}/v2/`)).status).toBe(401);
    } finally {
      await up.setFault(null);
    }
  });

  test("status 500 on the CDN answers S3-style XML", async () => {
    const blob = images.five.manifests[0]!.layers[0]!;
    const loc = await cdnLocation("library/five", blob.digest);
    await up.setFault({ kind: "status", status: 500, server: "cdn" });
    try {
      const r = await fetch(loc);
      expect(r.status).toBe(500);
      expect(await r.text()).toContain("<Code>InternalError</Code>");
      // The front is not affected by a CDN-only fault.
      expect((await fetch(`${up.url}/v2/`)).status).toBe(401);
    } finally {
      await up.setFault(null);
    }
  });

  test("hang: the request is accepted and never answered", async () => {
    up.clearLog();
    await up.setFault({ kind: "hang", match: /\/manifests\// });
    try {
      const started = Date.now();
      const err = await fetch(`${up.url}/v2/library/five/manifests/latest`, { signal: AbortSignal.timeout(700) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe("TimeoutError");
      expect(Date.now() - started).toBeGreaterThanOrEqual(650);
      expect(up.count({ server: "front", pathIncludes: "/manifests/", status: 0 })).toBe(1);
      expect((await fetch(`${up.url}/v2/`)).status).toBe(401); // non-matching path answers
    } finally {
      await up.setFault(null);
    }
    expect(up.count({ server: "front", pathIncludes: "/manifests/", status: 0 })).toBe(1);

    // On the CDN too; clearing the fault drops the held connection.
    const blob = images.five.manifests[0]!.layers[0]!;
    const loc = await cdnLocation("library/five", blob.digest);
    await up.setFault({ kind: "hang", server: "cdn" });
    try {
      const pending = fetch(loc).then(
        (r) => r.status,
        (e: unknown) => e,
      );
      const first = await Promise.race([pending, Bun.sleep(500).then(() => "still waiting")]);
      expect(first).toBe("still waiting");
      await up.setFault(null);
      // Settles: an error, or a 200 when fetch transparently retries a GET whose
      // reused keep-alive connection was closed without an answer.
      const settled = await Promise.race([pending, Bun.sleep(2000).then(() => "still waiting")]);
      expect(settled === 200 || settled instanceof Error).toBe(true);
    } finally {
      await up.setFault(null);
    }
  });

  test("reset: the CDN sends headers with the full length, afterBytes, then drops the connection", async () => {
    const blob = biggestBlob(images.big);
    const loc = await cdnLocation("library/big", blob.digest);
    await up.setFault({ kind: "reset", afterBytes: 100_000 });
    try {
      const r = await fetch(loc);
      expect(r.status).toBe(200);
      expect(Number(r.headers.get("content-length"))).toBe(blob.size);
      const got = await drain(r);
      expect(got.error).toBeDefined();
      expect(got.bytes).toBeGreaterThan(0);
      expect(got.bytes).toBeLessThanOrEqual(100_000);
      expect(up.entries({ server: "cdn" }).at(-1)?.bytes).toBe(100_000);
    } finally {
      await up.setFault(null);
    }
  });

  test("stall: headers and afterBytes, then silence", async () => {
    const blob = biggestBlob(images.big);
    const loc = await cdnLocation("library/big", blob.digest);
    await up.setFault({ kind: "stall", afterBytes: 1000 });
    try {
      const r = await fetch(loc);
      expect(r.status).toBe(200);
      const got = await drain(r, 700);
      expect(got).toEqual({ bytes: 1000, idle: true });
    } finally {
      await up.setFault(null);
    }
  });

  test("corrupt: right length, wrong bytes", async () => {
    const blob = images.five.manifests[0]!.layers[4]!;
    const loc = await cdnLocation("library/five", blob.digest);
    await up.setFault({ kind: "corrupt" });
    try {
      const r = await fetch(loc);
      expect(r.status).toBe(200);
      const body = await r.arrayBuffer();
      expect(body.byteLength).toBe(blob.size);
      expect(sha256(body)).not.toBe(blob.digest);
    } finally {
      await up.setFault(null);
    }
    expect(sha256(await (await fetch(loc)).arrayBuffer())).toBe(blob.digest);
  });

  test("down: front and CDN refuse connections until cleared; token server stays", async () => {
    const frontPort = Number(new URL(up.url).port);
    const cdnPort = Number(new URL(up.cdnUrl).port);
    await up.setFault({ kind: "down" });
    try {
      expect(await portOpen(frontPort)).toBe(false);
      expect(await portOpen(cdnPort)).toBe(false);
      await expect(fetch(`${up.url}/v2/`)).rejects.toThrow();
      expect((await fetch(`${up.tokenUrl}?service=registry.test`)).status).toBe(200);
    } finally {
      await up.setFault(null);
    }
    expect((await fetch(`${up.url}/v2/`)).status).toBe(401);
  });

  test("stopAll(): everything is gone (registry PID dead); start() brings it back with the data", async () => {
    const pid = up.registryPid!;
    expect(pidAlive(pid)).toBe(true);
    const ports = [up.url, up.cdnUrl, up.tokenUrl, up.registryUrl].map((u) => Number(new URL(u).port));
    await up.stopAll();
    expect(pidAlive(pid)).toBe(false);
    for (const p of ports) expect(await portOpen(p)).toBe(false);
    await up.start();
    expect(up.registryPid).not.toBe(pid);
    const r = await ociFetch(`${up.url}/v2/library/five/manifests/latest`, { headers: { accept: MT.dockerManifest } });
    expect(r.status).toBe(200);
    expect(r.headers.get("docker-content-digest")).toBe(images.five.manifestDigest);
  });
});

describe("stop", () => {
  test("stop() kills the registry by PID, closes every port and removes the temp dir", async () => {
    const pid = up.registryPid!;
    const ports = [up.url, up.cdnUrl, up.tokenUrl, up.registryUrl].map((u) => Number(new URL(u).port));
    expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("docker-registry");
    await up.stop();
    expect(pidAlive(pid)).toBe(false);
    for (const p of ports) expect(await portOpen(p)).toBe(false);
    expect(existsSync(up.tmpDir)).toBe(false);
  });
});
