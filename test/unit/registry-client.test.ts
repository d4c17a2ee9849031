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
