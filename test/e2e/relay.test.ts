// The secondary-mirror relay (relay/) against the Docker-Hub-like test upstream: token flow
// through the relay, manifests, blobs followed through the 307 to the CDN without leaking
// Authorization, Range, the secret, name/registry checks, private-redirect refusal, pagination
// links, and a real skopeo pull through it; all of it on Bun and on workerd (Cloudflare's
// runtime, test/harness/relay-runtime.ts), so whatever the Workers runtime forbids shows here.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isNonPublicHost } from "../../src/protocol/ip.ts";
import { parseRelayConfig } from "../../relay/src/serve.ts";
import { ALL_MANIFEST_TYPES, bigLayer, fiveLayer, multiArch, readBlob, sha256Digest, type BuiltImage } from "../harness/images.ts";
import { parseBearerChallenge } from "../harness/oci-client.ts";
import { freePort, killPid, run, waitForPort } from "../harness/proc.ts";
import { RELAY_RUNTIMES, startRelay, type RelayRuntime, type StartedRelay } from "../harness/relay-runtime.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

const SECRET = "relay-test-secret";
const REFS = { five: "library/relay-five", multi: "library/relay-multi", big: "library/relay-big", private: "private/relay-secret" } as const;

let up: Upstream;
let five: BuiltImage;
let multi: BuiltImage;
let big: BuiltImage;
const tmpDirs: string[] = [];

const sha256 = (b: ArrayBuffer | Uint8Array) => sha256Digest(new Uint8Array(b));
const ACCEPT = ALL_MANIFEST_TYPES.join(", ");
/** Every request in this file is bounded in time. */
const T = () => AbortSignal.timeout(30_000);

async function ociError(res: Response): Promise<{ code: string; message: string }> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  expect(body.errors.length).toBeGreaterThan(0);
  return body.errors[0]!;
}

/** A pull token fetched the way a client does it: from the challenge the relay hands out. */
async function tokenViaRelay(base: string, repository: string, creds?: string): Promise<string> {
  const res = await fetch(`${base}/v2/${repository}/manifests/latest`, { method: "HEAD", signal: T() });
  expect(res.status).toBe(401);
  const ch = parseBearerChallenge(res.headers.get("www-authenticate"));
  if (!ch) throw new Error("no Bearer challenge from the relay");
  const u = new URL(ch.realm);
  if (ch.service) u.searchParams.set("service", ch.service);
  u.searchParams.append("scope", ch.scope ?? `repository:${repository}:pull`);
  const headers: Record<string, string> = creds ? { authorization: `Basic ${btoa(creds)}` } : {};
  const tok = await fetch(u, { headers, signal: T() });
  expect(tok.status).toBe(200);
  const body = (await tok.json()) as { token?: string; access_token?: string };
  const value = body.token ?? body.access_token;
  if (!value) throw new Error("token response without token");
  return value;
}

beforeAll(async () => {
  up = await startUpstream();
  [five, multi, big] = await Promise.all([fiveLayer({ seed: "relay" }), multiArch({ seed: "relay" }), bigLayer({ seed: "relay", sizeMiB: 12 })]);
  await up.push(five, `${REFS.five}:v1`);
  await up.push(five, `${REFS.five}:v2`);
  await up.push(multi, `${REFS.multi}:latest`);
  await up.push(big, `${REFS.big}:latest`);
  await up.push(five, `${REFS.private}:latest`);
}, 300_000);

afterAll(async () => {
  await up?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** Everything a client sees, on each runtime the relay is built for (Bun, and workerd: Cloudflare's). */
function relaySuite(runtime: RelayRuntime): void {
  let relay: StartedRelay; // open, follows redirects to loopback (the harness CDN)
  let strict: StartedRelay; // secret required, private redirects refused
  beforeAll(async () => {
    [relay, strict] = await Promise.all([
      startRelay(runtime, { registries: { "docker.io": { upstream: up.url } }, allowPrivateRedirects: true, open: true }),
      startRelay(runtime, { registries: { "docker.io": { upstream: up.url } }, secret: SECRET }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([relay?.stop(), strict?.stop()]);
  });

  describe("auth through the relay", () => {
    test("/v2/ answers the upstream's challenge with the realm pointing at the relay's /token", async () => {
      const res = await fetch(`${relay.url}/v2/`, { signal: T() });
      expect(res.status).toBe(401);
      expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
      const ch = parseBearerChallenge(res.headers.get("www-authenticate"));
      expect(ch?.realm).toBe(`${relay.url}/token?upstream=docker.io`);
      expect(ch?.service).toBe(up.service);
      await res.body?.cancel();
    });

    test("a repository challenge keeps service and scope; the token comes from the upstream realm via the relay", async () => {
      const res = await fetch(`${relay.url}/v2/${REFS.five}/manifests/v1`, { headers: { accept: ACCEPT }, signal: T() });
      expect(res.status).toBe(401);
      const ch = parseBearerChallenge(res.headers.get("www-authenticate"));
      expect(ch?.realm).toBe(`${relay.url}/token?upstream=docker.io`);
      expect(ch?.scope).toBe(`repository:${REFS.five}:pull`);
      await res.body?.cancel();

      const before = up.count({ server: "token" });
      const token = await tokenViaRelay(relay.url, REFS.five);
      expect(token.split(".")).toHaveLength(3); // a JWT from the harness token server
      expect(up.count({ server: "token" })).toBe(before + 1);
      const seen = up.entries({ server: "token" }).at(-1)!;
      expect(new URLSearchParams(seen.query).get("scope")).toBe(`repository:${REFS.five}:pull`);
      expect(new URLSearchParams(seen.query).has("upstream")).toBe(false);
    });

    test("the client's Basic credentials reach the token server: a private repository opens only with them", async () => {
      const anonymous = await tokenViaRelay(relay.url, REFS.private);
      const denied = await fetch(`${relay.url}/v2/${REFS.private}/manifests/latest`, {
        headers: { authorization: `Bearer ${anonymous}`, accept: ACCEPT },
        signal: T(),
      });
      expect(denied.status).toBe(401);
      await denied.body?.cancel();

      const withCreds = await tokenViaRelay(relay.url, REFS.private, "reader:readpass");
      const ok = await fetch(`${relay.url}/v2/${REFS.private}/manifests/latest`, {
        headers: { authorization: `Bearer ${withCreds}`, accept: ACCEPT },
        signal: T(),
      });
      expect(ok.status).toBe(200);
      expect(ok.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      await ok.body?.cancel();
    });
  });

  describe("manifests and blobs", () => {
    let token: string;
    let multiToken: string;
    let bigToken: string;
    beforeAll(async () => {
      [token, multiToken, bigToken] = await Promise.all([
        tokenViaRelay(relay.url, REFS.five),
        tokenViaRelay(relay.url, REFS.multi),
        tokenViaRelay(relay.url, REFS.big),
      ]);
    });
    const auth = (t: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${t}`, ...extra });

    test("manifest by tag: GET and HEAD carry the pushed digest, type and length", async () => {
      const get = await fetch(`${relay.url}/v2/${REFS.five}/manifests/v1`, { headers: auth(token, { accept: ACCEPT }), signal: T() });
      expect(get.status).toBe(200);
      const body = await get.arrayBuffer();
      expect(get.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      expect(sha256(body)).toBe(five.manifestDigest);
      expect(get.headers.get("content-type")).toBe(five.mediaType);
      expect(get.headers.get("content-length")).toBe(String(five.manifestSize));

      const head = await fetch(`${relay.url}/v2/${REFS.five}/manifests/v1`, { method: "HEAD", headers: auth(token, { accept: ACCEPT }), signal: T() });
      expect(head.status).toBe(200);
      expect(head.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      expect(head.headers.get("content-length")).toBe(String(five.manifestSize));
    });

    test("official images work without library/ and with an explicit docker.io prefix", async () => {
      for (const path of ["relay-five", "docker.io/relay-five", "docker.io/library/relay-five"]) {
        const res = await fetch(`${relay.url}/v2/${path}/manifests/v1`, { method: "HEAD", headers: auth(token, { accept: ACCEPT }), signal: T() });
        expect(res.status).toBe(200);
        expect(res.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      }
    });

    test("multi-arch: index by tag, platform manifests by digest", async () => {
      const index = await fetch(`${relay.url}/v2/${REFS.multi}/manifests/latest`, { headers: auth(multiToken, { accept: ACCEPT }), signal: T() });
      expect(index.status).toBe(200);
      expect(sha256(await index.arrayBuffer())).toBe(multi.manifestDigest);
      expect(index.headers.get("content-type")).toBe(multi.mediaType);
      for (const m of multi.manifests) {
        const res = await fetch(`${relay.url}/v2/${REFS.multi}/manifests/${m.digest}`, { headers: auth(multiToken, { accept: ACCEPT }), signal: T() });
        expect(res.status).toBe(200);
        expect(res.headers.get("docker-content-digest")).toBe(m.digest);
        expect(sha256(await res.arrayBuffer())).toBe(m.digest);
      }
    });

    test("blobs: the relay follows the 307 to the CDN itself and never sends it Authorization", async () => {
      for (const blob of [...five.blobs, ...big.blobs]) {
        const repo = five.blobs.includes(blob) ? REFS.five : REFS.big;
        const res = await fetch(`${relay.url}/v2/${repo}/blobs/${blob.digest}`, { headers: auth(repo === REFS.five ? token : bigToken), signal: T() });
        expect(res.status).toBe(200);
        expect(res.headers.get("docker-content-digest")).toBe(blob.digest);
        const bytes = await res.arrayBuffer();
        expect(bytes.byteLength).toBe(blob.size);
        expect(sha256(bytes)).toBe(blob.digest);
        // The upstream front answered 307 and the bytes came from the CDN.
        expect(up.count({ server: "front", method: "GET", pathIncludes: blob.digest, status: 307 })).toBeGreaterThan(0);
        expect(up.count({ server: "cdn", method: "GET", pathIncludes: blob.digest, status: 200 })).toBeGreaterThan(0);
      }
      expect(up.entries({ server: "cdn" }).filter((e) => e.headers.authorization)).toEqual([]);
    });

    test("HEAD of a blob gives its length and digest", async () => {
      const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const res = await fetch(`${relay.url}/v2/${REFS.big}/blobs/${blob.digest}`, { method: "HEAD", headers: auth(bigToken), signal: T() });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe(String(blob.size));
      expect(res.headers.get("docker-content-digest")).toBe(blob.digest);
    });

    test("Range is forwarded: 206 with Content-Range and the right slice", async () => {
      // (The harness front proxies Range GETs to distribution instead of redirecting them; the
      // redirected case is covered with a second registry below.)
      const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const res = await fetch(`${relay.url}/v2/${REFS.big}/blobs/${blob.digest}`, {
        headers: auth(bigToken, { range: "bytes=1000-1999" }),
        signal: T(),
      });
      expect(res.status).toBe(206);
      expect(res.headers.get("content-range")).toBe(`bytes 1000-1999/${blob.size}`);
      const got = new Uint8Array(await res.arrayBuffer());
      expect(got).toEqual(new Uint8Array(readBlob(big, blob.digest).subarray(1000, 2000)));
    });

    test("a redirect to a private address is refused unless allowPrivateRedirects", async () => {
      const blob = five.blobs[0]!;
      const direct = await up.token(`repository:${REFS.five}:pull`); // strict refuses the loopback token realm too
      const headers = { authorization: `Bearer ${direct}`, [`x-ferry-relay-secret`]: SECRET };
      // The configured upstream itself is trusted even on loopback: manifests work.
      const manifest = await fetch(`${strict.url}/v2/${REFS.five}/manifests/v1`, { headers: { ...headers, accept: ACCEPT }, signal: T() });
      expect(manifest.status).toBe(200);
      expect(manifest.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      await manifest.body?.cancel();

      const cdnBefore = up.count({ server: "cdn" });
      const res = await fetch(`${strict.url}/v2/${REFS.five}/blobs/${blob.digest}`, { headers, signal: T() });
      expect(res.status).toBe(502);
      const err = await ociError(res);
      expect(err.message).toContain("private address 127.0.0.1");
      expect(up.count({ server: "cdn" })).toBe(cdnBefore);
    });
  });

  describe("a second registry chosen by mount, path prefix or ?ns=", () => {
    // A token-less registry (like public ghcr.io pulls) that redirects every blob GET, Range or
    // not, to the harness CDN, and pages its tag list one tag at a time.
    let stub: ReturnType<typeof Bun.serve>;
    let both: StartedRelay;
    const TAGS = ["a", "b", "c"];
    beforeAll(async () => {
      stub = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch(req) {
          const url = new URL(req.url);
          if (url.pathname === "/v2/") return Response.json({});
          const blob = /^\/v2\/owner\/img\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
          if (blob) return new Response(null, { status: 307, headers: { location: up.cdnUrlFor(blob[1]!) } });
          if (url.pathname === "/v2/owner/img/tags/list") {
            const last = url.searchParams.get("last");
            const at = last === null ? 0 : TAGS.indexOf(last) + 1;
            const headers: Record<string, string> = {};
            if (at + 1 < TAGS.length) headers.link = `</v2/owner/img/tags/list?last=${TAGS[at]}&n=1>; rel="next"`;
            return Response.json({ name: "owner/img", tags: TAGS.slice(at, at + 1) }, { headers });
          }
          return Response.json({ errors: [{ code: "NAME_UNKNOWN", message: "no" }] }, { status: 404 });
        },
      });
      both = await startRelay(runtime, { registries: { "docker.io": { upstream: up.url }, "ghcr.io": { upstream: `http://127.0.0.1:${stub.port}` } }, allowPrivateRedirects: true, open: true });
    });
    afterAll(async () => {
      await both?.stop();
      stub?.stop(true);
    });

    async function allTags(first: string): Promise<string[]> {
      const tags: string[] = [];
      let next: string | undefined = first;
      for (let page = 0; next && page < 10; page++) {
        const res: Response = await fetch(`${both.url}${next}`, { signal: T() });
        expect(res.status).toBe(200);
        tags.push(...((await res.json()) as { tags: string[] }).tags);
        next = /<([^>]+)>/.exec(res.headers.get("link") ?? "")?.[1];
      }
      return tags;
    }

    test("tags/list pagination links lead back through the relay, keeping the mount, prefix or ?ns=", async () => {
      expect(await allTags("/v2/ghcr.io/owner/img/tags/list?n=1")).toEqual(TAGS);
      expect(await allTags("/ghcr.io/v2/owner/img/tags/list?n=1")).toEqual(TAGS);
      expect(await allTags("/v2/owner/img/tags/list?n=1&ns=ghcr.io")).toEqual(TAGS);
      const res = await fetch(`${both.url}/v2/owner/img/tags/list?n=1&ns=ghcr.io`, { signal: T() });
      expect(res.headers.get("oci-namespace")).toBe("ghcr.io");
      expect(res.headers.get("link")).toBe('</v2/owner/img/tags/list?last=a&n=1&ns=ghcr.io>; rel="next"');
      await res.body?.cancel();
    });

    test("a redirected Range request reaches the CDN with Range and without Authorization", async () => {
      const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const res = await fetch(`${both.url}/v2/ghcr.io/owner/img/blobs/${blob.digest}`, {
        headers: { authorization: "Bearer for-the-registry-only", range: "bytes=5000-" },
        signal: T(),
      });
      expect(res.status).toBe(206);
      expect(res.headers.get("content-range")).toBe(`bytes 5000-${blob.size - 1}/${blob.size}`);
      expect(res.headers.get("docker-content-digest")).toBe(blob.digest);
      const got = new Uint8Array(await res.arrayBuffer());
      expect(sha256(got)).toBe(sha256(readBlob(big, blob.digest).subarray(5000)));
      const cdn = up.entries({ server: "cdn", pathIncludes: blob.digest }).at(-1)!;
      expect(cdn.status).toBe(206);
      expect(cdn.headers.range).toBe("bytes=5000-");
      expect(cdn.headers.authorization).toBe(false);
    });

    test("an unsatisfiable range from the CDN is a 416 OCI error, a CDN failure a 502", async () => {
      const blob = five.blobs[0]!;
      const res = await fetch(`${both.url}/v2/ghcr.io/owner/img/blobs/${blob.digest}`, { headers: { range: `bytes=${blob.size + 10}-` }, signal: T() });
      expect(res.status).toBe(416);
      expect((await ociError(res)).code).toBe("RANGE_INVALID");

      await up.setFault({ kind: "status", status: 403, server: "cdn", times: 1 });
      try {
        const failed = await fetch(`${both.url}/v2/ghcr.io/owner/img/blobs/${blob.digest}`, { signal: T() });
        expect(failed.status).toBe(502);
        expect((await ociError(failed)).message).toContain("answered 403");
      } finally {
        await up.setFault(null);
      }
    });

    test("/v2/ of a registry without token auth is a plain 200", async () => {
      for (const path of ["/v2/?ns=ghcr.io", "/ghcr.io/v2/"]) {
        const res = await fetch(`${both.url}${path}`, { signal: T() });
        expect(res.status).toBe(200);
        expect(res.headers.get("www-authenticate")).toBeNull();
        await res.body?.cancel();
      }
    });

    test("a registry mounted in front of /v2 (an endpoint URL with a path, as ferry uses it)", async () => {
      const challenge = await fetch(`${both.url}/docker.io/v2/`, { signal: T() });
      expect(challenge.status).toBe(401);
      expect(parseBearerChallenge(challenge.headers.get("www-authenticate"))?.realm).toBe(`${both.url}/token?upstream=docker.io`);
      await challenge.body?.cancel();
      const token = await tokenViaRelay(`${both.url}/docker.io`, REFS.five);
      const res = await fetch(`${both.url}/docker.io/v2/relay-five/manifests/v1`, { headers: { authorization: `Bearer ${token}`, accept: ACCEPT }, signal: T() });
      expect(res.status).toBe(200);
      expect(sha256(await res.arrayBuffer())).toBe(five.manifestDigest);
      const unknown = await fetch(`${both.url}/quay.io/v2/`, { signal: T() });
      expect(unknown.status).toBe(404);
      expect((await ociError(unknown)).code).toBe("NAME_UNKNOWN");
    });
  });

  describe("what the relay refuses", () => {
    test("methods other than GET and HEAD: 405 with an OCI error", async () => {
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const res = await fetch(`${relay.url}/v2/${REFS.five}/blobs/uploads/`, { method, signal: T() });
        expect(res.status).toBe(405);
        expect(res.headers.get("allow")).toBe("GET, HEAD");
        expect((await ociError(res)).code).toBe("UNSUPPORTED");
      }
    });

    test("with a secret configured: missing → 401, wrong → 403, right → through (on /v2/ and /token too)", async () => {
      for (const path of ["/v2/", `/v2/${REFS.five}/manifests/v1`, "/token?upstream=docker.io&scope=x"]) {
        const missing = await fetch(`${strict.url}${path}`, { signal: T() });
        expect(missing.status).toBe(401);
        expect((await ociError(missing)).code).toBe("UNAUTHORIZED");
        const wrong = await fetch(`${strict.url}${path}`, { headers: { "x-ferry-relay-secret": `${SECRET}x` }, signal: T() });
        expect(wrong.status).toBe(403);
        expect((await ociError(wrong)).code).toBe("DENIED");
      }
      const before = up.count({ server: "front" });
      const ok = await fetch(`${strict.url}/v2/`, { headers: { "x-ferry-relay-secret": SECRET }, signal: T() });
      expect(ok.status).toBe(401); // the upstream's challenge, rewritten
      expect(parseBearerChallenge(ok.headers.get("www-authenticate"))?.realm).toBe(`${strict.url}/token?upstream=docker.io`);
      await ok.body?.cancel();
      expect(up.count({ server: "front" })).toBe(before + 1);
    });

    test("an unknown registry prefix or ?ns= is NAME_UNKNOWN, never the default registry", async () => {
      const before = up.count();
      for (const path of ["/v2/quay.io/foo/bar/manifests/latest", "/v2/localhost:5000/x/blobs/sha256:" + "0".repeat(64), "/v2/foo/manifests/latest?ns=ghcr.io"]) {
        const res = await fetch(`${relay.url}${path}`, { signal: T() });
        expect(res.status).toBe(404);
        expect((await ociError(res)).code).toBe("NAME_UNKNOWN");
      }
      const token = await fetch(`${relay.url}/token?upstream=ghcr.io&service=x`, { signal: T() });
      expect(token.status).toBe(404);
      expect((await ociError(token)).code).toBe("NAME_UNKNOWN");
      expect(up.count()).toBe(before);
    });

    test("invalid names, tags and digests are rejected before anything goes upstream", async () => {
      const before = up.count();
      const cases: [string, string][] = [
        ["/v2/Library/Nginx/manifests/latest", "NAME_INVALID"],
        ["/v2/library/a--/manifests/latest", "NAME_INVALID"],
        ["/v2/library/nginx/manifests/-bad", "TAG_INVALID"],
        ["/v2/library/nginx/blobs/sha256:abc", "DIGEST_INVALID"],
        ["/v2/library/nginx/blobs/latest", "DIGEST_INVALID"],
        ["/v2/library/nginx/manifests/sha256:" + "A".repeat(64), "DIGEST_INVALID"],
      ];
      for (const [path, code] of cases) {
        const res = await fetch(`${relay.url}${path}`, { signal: T() });
        expect(res.status).toBe(400);
        expect((await ociError(res)).code).toBe(code);
      }
      const other = await fetch(`${relay.url}/v2/_catalog`, { signal: T() });
      expect(other.status).toBe(404);
      await other.body?.cancel();
      expect(up.count()).toBe(before);
    });
  });

  describe("upstream trouble reaches the client as the upstream said it", () => {
    test("a 429 comes back with its Retry-After and TOOMANYREQUESTS body, so ferry can cool the endpoint down", async () => {
      const token = await tokenViaRelay(relay.url, REFS.five);
      await up.setFault({ kind: "status", status: 429, retryAfter: 42, server: "front", times: 1 });
      try {
        const res = await fetch(`${relay.url}/v2/${REFS.five}/manifests/v1`, { headers: { authorization: `Bearer ${token}`, accept: ACCEPT }, signal: T() });
        expect(res.status).toBe(429);
        expect(res.headers.get("retry-after")).toBe("42");
        expect((await ociError(res)).code).toBe("TOOMANYREQUESTS");
      } finally {
        await up.setFault(null);
      }
    });

    test("an unreachable upstream is a 502 UNAVAILABLE, not a hang", async () => {
      const closed = await startRelay(runtime, { registries: { "docker.io": { upstream: "http://127.0.0.1:9" } }, open: true });
      try {
        const res = await fetch(`${closed.url}/v2/library/x/manifests/latest`, { signal: T() });
        expect(res.status).toBe(502);
        expect((await ociError(res)).code).toBe("UNAVAILABLE");
      } finally {
        await closed.stop();
      }
    });

    test("an upstream that never answers hits the header deadline: 504", async () => {
      const slow = await startRelay(runtime, { registries: { "docker.io": { upstream: up.url } }, upstreamTimeoutMs: 300, open: true });
      await up.setFault({ kind: "hang", server: "front" });
      try {
        const res = await fetch(`${slow.url}/v2/library/x/manifests/latest`, { signal: T() });
        expect(res.status).toBe(504);
        expect((await ociError(res)).code).toBe("UNAVAILABLE");
      } finally {
        await up.setFault(null);
        await slow.stop();
      }
    });
  });

  describe("a real client", () => {
    test("skopeo copies an image through the relay (token flow, manifests, CDN-redirected blobs)", async () => {
      const dir = mkdtempSync(join(tmpdir(), "ferry-relay-skopeo-"));
      tmpDirs.push(dir);
      const policy = join(dir, "policy.json");
      writeFileSync(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
      const dest = join(dir, "image");
      const port = new URL(relay.url).port;
      const cdnBefore = up.count({ server: "cdn" });
      await run(
        ["skopeo", "--policy", policy, "copy", "--src-tls-verify=false", "--src-no-creds", `docker://127.0.0.1:${port}/${REFS.five}:v1`, `dir:${dest}`],
        { timeoutMs: 120_000 },
      );
      const manifest = readFileSync(join(dest, "manifest.json"));
      expect(sha256(manifest)).toBe(five.manifestDigest);
      for (const blob of five.blobs) {
        const file = join(dest, blob.digest.slice("sha256:".length));
        expect(existsSync(file)).toBe(true);
        expect(sha256(readFileSync(file))).toBe(blob.digest);
      }
      // skopeo's blob GETs went through the relay, which fetched them from the CDN without Authorization.
      expect(up.count({ server: "cdn" })).toBeGreaterThanOrEqual(cdnBefore + five.blobs.length);
      expect(up.entries({ server: "cdn" }).filter((e) => e.headers.authorization)).toEqual([]);
      expect(up.entries({ server: "front" }).some((e) => e.headers.userAgent?.includes("skopeo"))).toBe(true);
    }, 180_000);
  });
}

for (const runtime of RELAY_RUNTIMES) describe(`on ${runtime}`, () => relaySuite(runtime));

describe("the Workers entry and the pure pieces", () => {
  test("worker.ts serves with its config from env vars (secret included)", async () => {
    const worker = (await import("../../relay/src/worker.ts")).default;
    const env = { RELAY_REGISTRIES: `docker.io=${up.url}`, RELAY_SECRET: SECRET, RELAY_ALLOW_PRIVATE_REDIRECTS: "true", SOME_KV: {} };
    const denied = await worker.fetch(new Request("https://relay.example.workers.dev/v2/"), env);
    expect(denied.status).toBe(401);
    const res = await worker.fetch(new Request("https://relay.example.workers.dev/v2/", { headers: { "x-ferry-relay-secret": SECRET } }), env);
    expect(res.status).toBe(401);
    expect(parseBearerChallenge(res.headers.get("www-authenticate"))?.realm).toBe("https://relay.example.workers.dev/token?upstream=docker.io");
    await res.body?.cancel();
  });

  test("the handler's modules use web-standard APIs only (they must run on Workers)", () => {
    const dir = join(import.meta.dir, "../../relay/src");
    for (const file of ["handler.ts", "config.ts", "route.ts", "upstream.ts", "headers.ts", "challenge.ts", "secret.ts", "errors.ts", "worker.ts"]) {
      const code = readFileSync(join(dir, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, ""); // comments may name Bun
      expect({ file, nodeOrBun: /\bfrom\s+"(node:|bun)|\bBun\.|\bBuffer\b|\bprocess\.|\brequire\(/.exec(code)?.[0] }).toEqual({ file, nodeOrBun: undefined });
    }
    // The grammar it shares with ferry (src/protocol): nothing imported at load time may be
    // Node's or Bun's (digest.ts's hashers name Bun inside functions the relay never calls).
    for (const file of ["ip.ts", "names.ts", "digest.ts", "challenge.ts"]) {
      const code = readFileSync(join(import.meta.dir, "../../src/protocol", file), "utf8");
      expect({ file, imports: /^import\s.*$/m.exec(code)?.[0] }).toEqual({ file, imports: undefined });
    }
  });

  test("parseRelayConfig reads the RELAY_* variables and names the one at fault", () => {
    expect(parseRelayConfig({ RELAY_OPEN: "true" })).toMatchObject({ registries: { "docker.io": { upstream: "https://registry-1.docker.io" } }, open: true });
    expect(() => parseRelayConfig({})).toThrow(/^RELAY_SECRET: /);
    const config = parseRelayConfig({
      RELAY_REGISTRIES: "docker.io=https://registry-1.docker.io, ghcr.io=https://ghcr.io\nquay.io=https://quay.io",
      RELAY_DEFAULT_REGISTRY: "ghcr.io",
      RELAY_SECRET: "s",
      RELAY_ALLOW_PRIVATE_REDIRECTS: "no",
    });
    expect(Object.keys(config.registries)).toEqual(["docker.io", "ghcr.io", "quay.io"]);
    expect(config).toMatchObject({ defaultRegistry: "ghcr.io", secret: "s", allowPrivateRedirects: false });
    const bad: [Record<string, string>, string][] = [
      [{ RELAY_OPEN: "perhaps" }, "RELAY_OPEN"],
      [{ RELAY_REGISTRIES: "docker.io" }, "RELAY_REGISTRIES"],
      [{ RELAY_REGISTRIES: "docker.io=ftp://x" }, "RELAY_REGISTRIES"],
      [{ RELAY_REGISTRIES: "Docker_Hub=https://x" }, "RELAY_REGISTRIES"],
      [{ RELAY_DEFAULT_REGISTRY: "ghcr.io" }, "RELAY_DEFAULT_REGISTRY"],
      [{ RELAY_ALLOW_PRIVATE_REDIRECTS: "maybe" }, "RELAY_ALLOW_PRIVATE_REDIRECTS"],
      [{ RELAY_SECRET_HEADER: "bad header" }, "RELAY_SECRET_HEADER"],
    ];
    for (const [env, key] of bad) expect(() => parseRelayConfig({ RELAY_OPEN: "true", ...env })).toThrow(new RegExp(`^${key}: `));
  });

  test("private hosts: loopback, RFC 1918, link-local, CGNAT, ULA, mapped IPv4 and localhost names", () => {
    const priv = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "[::1]", "[::]", "[fd00::1]", "[fe80::1]", "[::ffff:127.0.0.1]", "[::ffff:a9fe:a9fe]", "localhost", "a.localhost", "LOCALHOST."];
    const pub = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "[2606:4700::1111]", "[::ffff:8.8.8.8]", "production.cloudflare.docker.com", "localhost.example.com"];
    for (const h of priv) expect({ h, private: isNonPublicHost(h) }).toEqual({ h, private: true });
    for (const h of pub) expect({ h, private: isNonPublicHost(h) }).toEqual({ h, private: false });
    // The URL parser normalises odd IPv4 spellings before the check sees them.
    expect(isNonPublicHost(new URL("http://2130706433/").hostname)).toBe(true);
    expect(isNonPublicHost(new URL("http://0x7f.1/").hostname)).toBe(true);
  });

  test("ferry relay will not start without RELAY_SECRET unless told --open; the Workers entry relays nothing", async () => {
    const root = join(import.meta.dir, "../..");
    const cmd = [join(root, "node_modules/.bin/bun"), join(root, "src/main.ts"), "relay", "--listen"];
    const env = { RELAY_REGISTRIES: `docker.io=${up.url}`, RELAY_SECRET: "", RELAY_OPEN: "" };
    const before = up.count({ server: "front" });
    const refused = await run([...cmd, `127.0.0.1:${await freePort()}`], { env, timeoutMs: 20_000, allowFail: true });
    expect({ code: refused.code, names: /RELAY_SECRET/.test(refused.stderr) && /--open/.test(refused.stderr) }).toEqual({ code: 2, names: true });
    const port = await freePort();
    const open = Bun.spawn([...cmd, `127.0.0.1:${port}`, "--open"], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" });
    try {
      await waitForPort(port, { timeoutMs: 15_000 });
      const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: T() });
      expect(res.status).toBe(401); // the upstream's own challenge, relayed
      expect(parseBearerChallenge(res.headers.get("www-authenticate"))?.realm).toBe(`http://127.0.0.1:${port}/token?upstream=docker.io`);
    } finally {
      killPid(open.pid, "SIGKILL");
      await open.exited;
    }
    const worker = (await import("../../relay/src/worker.ts")).default;
    const unset = await worker.fetch(new Request("https://relay.example.workers.dev/v2/"), { RELAY_REGISTRIES: `docker.io=${up.url}`, RELAY_ALLOW_PRIVATE_REDIRECTS: "true" });
    expect(unset.status).toBe(500);
    expect((await ociError(unset)).message).toContain("RELAY_SECRET");
    expect(up.count({ server: "front" })).toBe(before + 1); // only the --open relay's request
  }, 60_000);
});
