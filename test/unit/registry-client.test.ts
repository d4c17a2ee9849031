// The typed upstream client against a tiny in-process registry: the registry's answers
// become Found/NotFound values, other failures typed errors, and the wire details
// (Docker-Content-Digest, Content-Length, Link pages) are read here.
import { afterEach, expect, test } from "bun:test";
import { createLogger } from "../../src/observe/logger.ts";
import { TokenCache } from "../../src/upstream/auth.ts";
import { InvalidAnswer, UpstreamError } from "../../src/upstream/errors.ts";
import { nextPagePath, nextPageQuery, RegistryClient } from "../../src/upstream/registry-client.ts";
import { Upstream } from "../../src/upstream/upstream.ts";
import { ALL_TYPES, errorJson, OCI_INDEX, OCI_MANIFEST, registryConfig, startTinyRegistry, type TinyRegistry } from "./support/tiny-registry.ts";

const running: TinyRegistry[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.stop();
});

function setup() {
  const up = startTinyRegistry();
  running.push(up);
  return { up, client: new RegistryClient(new Upstream(registryConfig([up.url]), new TokenCache(), createLogger("silent"))) };
}

const MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: "sha256:" + "1".repeat(64), size: 2 }, layers: [] });

test("headManifest: the digest the registry sent, or its 404 as NotFound (a HEAD carries no error body)", async () => {
  const { up, client } = setup();
  const digest = up.put("library/alpine", "3", OCI_MANIFEST, MANIFEST);
  expect(await client.headManifest("library/alpine", "3", { accept: ALL_TYPES })).toEqual({ found: true, digest });
  const missing = await client.headManifest("library/alpine", "nope", { accept: ALL_TYPES });
  expect(missing.found).toBe(false);
  if (!missing.found) expect(missing.error.failure).toMatchObject({ kind: "status", status: 404 });
  expect(up.count({ method: "HEAD", pathIncludes: "/v2/library/alpine/manifests/" })).toBe(2);
});

test("headManifest: a 401 from the registry is thrown as an UpstreamError, an invalid digest header is no digest", async () => {
  const { up, client } = setup();
  up.fault = (req) => (req.headers.get("accept") ? errorJson(401, "UNAUTHORIZED", "authentication required") : undefined);
  const error = await client.headManifest("org/private", "1", { accept: ALL_TYPES }).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(UpstreamError);
  expect((error as UpstreamError).failure).toMatchObject({ kind: "status", status: 401 });
  up.fault = () => new Response(null, { headers: { "Docker-Content-Digest": "sha256:short" } });
  expect(await client.headManifest("org/app", "1")).toEqual({ found: true, digest: undefined });
});

test("getManifest: body, digest and media type; an oversized Content-Length is refused unread", async () => {
  const { up, client } = setup();
  const digest = up.put("library/alpine", "3", OCI_MANIFEST, MANIFEST);
  const got = await client.getManifest("library/alpine", "3", { accept: ALL_TYPES });
  expect(got.found).toBe(true);
  if (got.found) {
    expect(new TextDecoder().decode(got.body)).toBe(MANIFEST);
    expect(got.digest).toBe(digest);
    expect(got.contentType).toBe(OCI_MANIFEST);
  }
  up.fault = () => new Response(new Uint8Array(5 * 1024 * 1024), { headers: { "Content-Type": OCI_MANIFEST } });
  const error = await client.getManifest("library/alpine", "3").then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(InvalidAnswer);
  expect((error as Error).message).toBe(`upstream manifest too large (${5 * 1024 * 1024} bytes)`);
});

test("listTags: every Link page, in order and without repeats; a 404 is NotFound; a 503 on a later page is thrown", async () => {
  const { up, client } = setup();
  let failSecondPage = false;
  up.fault = (_req, url) => {
    if (url.pathname !== "/v2/org/app/tags/list") return errorJson(404, "NAME_UNKNOWN", "repository name not known to registry");
    if (!url.searchParams.has("last")) return Response.json({ name: "org/app", tags: ["b", "a"] }, { headers: { Link: '</v2/org/app/tags/list?last=a&n=2>; rel="next"' } });
    if (failSecondPage) return errorJson(503, "UNAVAILABLE", "down");
    return Response.json({ name: "org/app", tags: ["a", "c"] });
  };
  expect(await client.listTags("org/app")).toEqual({ found: true, tags: ["b", "a", "c"] });
  expect(up.count({ pathIncludes: "/tags/list" })).toBe(2);
  const missing = await client.listTags("org/none");
  expect(missing.found).toBe(false);
  if (!missing.found) expect(missing.error.failure).toMatchObject({ status: 404, code: "NAME_UNKNOWN" });
  failSecondPage = true;
  const error = await client.listTags("org/app").then(() => undefined, (e: unknown) => e);
  expect((error as UpstreamError).failure).toMatchObject({ kind: "status", status: 503 });
});

test("referrers: a checked OCI index with its filter and next page; anything else is refused; a 404 is NotFound", async () => {
  const { up, client } = setup();
  const subject = "sha256:" + "a".repeat(64);
  const index = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  let body = index;
  up.fault = (req, url) => {
    if (!url.pathname.startsWith("/v2/org/app/referrers/")) return errorJson(404, "NAME_UNKNOWN", "no");
    expect(req.headers.get("accept")).toBe(OCI_INDEX);
    expect(url.search).toBe("?artifactType=x");
    return new Response(body, { headers: { "Content-Type": OCI_INDEX, "OCI-Filters-Applied": "artifactType", Link: `<${up.url}/v2/org/app/referrers/${subject}?n=1&last=z&ns=docker.io>; rel="next"` } });
  };
  const got = await client.referrers("org/app", subject, "artifactType=x");
  expect(got.found).toBe(true);
  if (got.found) expect({ body: new TextDecoder().decode(got.body), filtersApplied: got.filtersApplied, nextQuery: got.nextQuery }).toEqual({ body: index, filtersApplied: "artifactType", nextQuery: "n=1&last=z" });
  body = "<html></html>";
  const error = await client.referrers("org/app", subject, "artifactType=x").then(() => undefined, (e: unknown) => e);
  expect((error as Error).message).toBe("upstream referrers answer is not an OCI image index");
  expect((await client.referrers("org/none", subject, "")).found).toBe(false);
});

test("accepts: a login is GET /v2/, a read is a one-tag listing; a registry 401 is a no", async () => {
  const { up, client } = setup();
  const seen: string[] = [];
  up.fault = (req, url) => {
    seen.push(url.pathname + url.search);
    return req.headers.get("authorization") === `Basic ${btoa("u:p")}` || url.pathname === "/v2/" ? undefined : errorJson(401, "UNAUTHORIZED", "no");
  };
  expect(await client.accepts({ username: "u", password: "p" })).toBe(true);
  expect(await client.accepts(undefined, "org/private")).toBe(false);
  expect(seen).toEqual(["/v2/", "/v2/org/private/tags/list?n=1"]);
});

test("Link headers: the next page's path on /v2/ only, and a referrers cursor without ns", () => {
  expect(nextPagePath('</v2/x/tags/list?last=a&n=100>; rel="next"')).toBe("/v2/x/tags/list?last=a&n=100");
  expect(nextPagePath('<https://elsewhere.example/other>; rel="next"')).toBeUndefined();
  expect(nextPagePath(null)).toBeUndefined();
  expect(nextPageQuery('</v2/x/referrers/sha256:a?ns=ghcr.io>; rel="next"')).toBeUndefined();
});

const BLOB = new TextEncoder().encode("0123456789abcdef");
const text = async (body: ReadableStream<Uint8Array>) => new TextDecoder().decode(await new Response(body).arrayBuffer());
const thrown = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

test("headBlob: the size from Content-Length, the registry's 404 as NotFound, a 401 thrown", async () => {
  const { up, client } = setup();
  const digest = up.putBlob("library/alpine", BLOB);
  expect(await client.headBlob("library/alpine", digest)).toEqual({ found: true, size: BLOB.byteLength });
  const missing = await client.headBlob("library/other", digest);
  expect(missing.found).toBe(false);
  if (!missing.found) expect(missing.error.failure).toMatchObject({ kind: "status", status: 404 });
  up.fault = () => errorJson(401, "UNAUTHORIZED", "authentication required");
  const error = await thrown(client.headBlob("library/alpine", digest));
  expect(error).toBeInstanceOf(UpstreamError);
  expect((error as UpstreamError).failure).toMatchObject({ kind: "status", status: 401 });
  expect(up.count({ method: "HEAD", pathIncludes: `/blobs/${digest}` })).toBe(3);
});

test("openBlob: the whole blob, a resume by Range (206), and the endpoint that answered with its stall timeout", async () => {
  const { up, client } = setup();
  const digest = up.putBlob("library/alpine", BLOB);
  const whole = await client.openBlob("library/alpine", digest);
  expect(whole.found).toBe(true);
  if (!whole.found) return;
  expect(whole.size).toBe(BLOB.byteLength);
  expect(await text(whole.body)).toBe("0123456789abcdef");
  expect(whole.endpoint.url).toBe(up.url);
  expect(whole.endpoint.config.stallTimeoutMs).toBe(2_000);
  const ranges: (string | null)[] = [];
  up.fault = (req) => void ranges.push(req.headers.get("range"));
  const rest = await client.openBlob("library/alpine", digest, { from: 10 });
  expect(rest.found).toBe(true);
  if (!rest.found) return;
  expect(rest.size).toBe(BLOB.byteLength); // the blob's size, not the part's
  expect(await text(rest.body)).toBe("abcdef");
  expect(ranges).toEqual(["bytes=10-"]);
  const missing = await client.openBlob("library/other", digest);
  expect(missing.found).toBe(false);
  if (!missing.found) expect(missing.error.failure).toMatchObject({ kind: "status", status: 404 });
});

test("openBlob: an upstream that ignores Range (200, whole body) has the bytes before the offset dropped; a different 206 range is refused", async () => {
  const { up, client } = setup();
  const digest = up.putBlob("library/alpine", BLOB);
  up.fault = () => new Response(BLOB, { headers: { "Content-Length": String(BLOB.byteLength) } });
  const ignored = await client.openBlob("library/alpine", digest, { from: 10 });
  expect(ignored.found).toBe(true);
  if (ignored.found) {
    expect(ignored.size).toBe(BLOB.byteLength);
    expect(await text(ignored.body)).toBe("abcdef");
  }
  up.fault = () => new Response(BLOB.subarray(4), { status: 206, headers: { "Content-Range": `bytes 4-15/${BLOB.byteLength}` } });
  const error = await thrown(client.openBlob("library/alpine", digest, { from: 10 }));
  expect(error).toBeInstanceOf(UpstreamError);
  expect((error as UpstreamError).failure).toMatchObject({ kind: "network", message: "upstream answered a different range" });
});

test("openBlob: `skip` passes over the tier that just failed when another serves blobs", async () => {
  const first = startTinyRegistry();
  const second = startTinyRegistry();
  running.push(first, second);
  const client = new RegistryClient(new Upstream(registryConfig([first.url, second.url]), new TokenCache(), createLogger("silent")));
  const digest = first.putBlob("library/alpine", BLOB);
  second.putBlob("library/alpine", BLOB);
  const skipped = client.upstream.blobEndpoints.find((e) => e.url === first.url)!;
  const opened = await client.openBlob("library/alpine", digest, { from: 4, skip: [skipped] });
  expect(opened.found).toBe(true);
  if (!opened.found) return;
  expect(opened.endpoint.url).toBe(second.url);
  expect(await text(opened.body)).toBe("456789abcdef");
  expect(first.count({ pathIncludes: "/blobs/" })).toBe(0);
  expect(second.count({ method: "GET", pathIncludes: `/blobs/${digest}` })).toBe(1);
});

test("openBlob: a 401 with a Bearer challenge is answered with a token, then the blob", async () => {
  const { up, client } = setup();
  const digest = up.putBlob("org/app", BLOB);
  const scopes: (string | null)[] = [];
  up.fault = (req, url) => {
    if (url.pathname === "/token") {
      scopes.push(url.searchParams.get("scope"));
      return Response.json({ token: "t0k" });
    }
    if (req.headers.get("authorization") === "Bearer t0k") return undefined;
    return errorJson(401, "UNAUTHORIZED", "authentication required", { "WWW-Authenticate": `Bearer realm="${up.url}/token",service="tiny",scope="repository:org/app:pull"` });
  };
  const opened = await client.openBlob("org/app", digest);
  expect(opened.found).toBe(true);
  if (opened.found) expect(await text(opened.body)).toBe("0123456789abcdef");
  expect(scopes).toEqual(["repository:org/app:pull"]);
  expect(up.log.filter((l) => l.path.includes("/blobs/")).map((l) => l.status)).toEqual([401, 200]);
});
