import { describe, expect, test } from "bun:test";
import { parseChallenges } from "../../src/protocol/challenge.ts";
import { digestOf, looksLikeDigest, parseDigest } from "../../src/protocol/digest.ts";
import { acceptsMediaType, MediaType, mediaTypeFromBody, parseAccept } from "../../src/protocol/media-types.ts";
import { isValidRepositoryName, isValidTag, withLibraryPrefix } from "../../src/protocol/names.ts";
import { parseContentRange, parseRange } from "../../src/protocol/range.ts";

const SHA = "a".repeat(64);

describe("digests", () => {
  test("accepts sha256 and sha512 with exact hex length", () => {
    expect(parseDigest(`sha256:${SHA}`)?.hex).toBe(SHA);
    expect(parseDigest(`sha512:${"b".repeat(128)}`)?.algorithm).toBe("sha512");
  });
  test.each([
    `sha256:${SHA.slice(1)}`,
    `sha256:${SHA}0`,
    `sha256:${SHA.toUpperCase()}`,
    `md5:${SHA}`,
    `sha256:../../${SHA.slice(6)}`,
    SHA,
    "",
    `sha256:${SHA.slice(1)}\0`,
  ])("rejects %p", (value) => expect(parseDigest(value)).toBeUndefined());
  test("tells digests from tags", () => {
    expect(looksLikeDigest("sha256:abc")).toBe(true);
    expect(looksLikeDigest("latest")).toBe(false);
    expect(looksLikeDigest("v1.2")).toBe(false);
  });
  test("digestOf hashes bytes", () => {
    expect(digestOf(new TextEncoder().encode(""))).toBe("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });
});

describe("names and tags", () => {
  test.each(["library/alpine", "grafana/grafana", "a/b/c", "a-b/c__d", "a.b/c-d-e", "x"])("valid name %p", (n) => expect(isValidRepositoryName(n)).toBe(true));
  test.each(["", "Library/alpine", "a//b", "../etc", "a/../b", "a/.b", "a/b/", "a%2fb", "a\\b", "a b", "-a", "a_", `${"a".repeat(256)}`, "a/%2e%2e/b"])(
    "invalid name %p",
    (n) => expect(isValidRepositoryName(n)).toBe(false),
  );
  test.each(["latest", "1.0", "v1_2-rc.3", "A", "_x"])("valid tag %p", (t) => expect(isValidTag(t)).toBe(true));
  test.each(["", ".x", "-x", "a/b", "a:b", "x".repeat(129)])("invalid tag %p", (t) => expect(isValidTag(t)).toBe(false));
  test("library/ prefix for one-component names", () => {
    expect(withLibraryPrefix("nginx")).toBe("library/nginx");
    expect(withLibraryPrefix("library/nginx")).toBe("library/nginx");
    expect(withLibraryPrefix("grafana/grafana")).toBe("grafana/grafana");
  });
});

describe("Range", () => {
  test("closed, open and suffix ranges", () => {
    expect(parseRange("bytes=0-9", 100)).toEqual({ kind: "range", range: { start: 0, end: 9 } });
    expect(parseRange("bytes=90-", 100)).toEqual({ kind: "range", range: { start: 90, end: 99 } });
    expect(parseRange("bytes=-10", 100)).toEqual({ kind: "range", range: { start: 90, end: 99 } });
    expect(parseRange("bytes=50-500", 100)).toEqual({ kind: "range", range: { start: 50, end: 99 } });
  });
  test("unsatisfiable and ignored", () => {
    expect(parseRange("bytes=100-", 100)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=-0", 100)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange(null, 100)).toEqual({ kind: "none" });
    expect(parseRange("bytes=5-1", 100)).toEqual({ kind: "none" });
    expect(parseRange("bytes=0-1,5-6", 100)).toEqual({ kind: "none" });
    expect(parseRange("items=0-1", 100)).toEqual({ kind: "none" });
    expect(parseRange(`bytes=0-${"9".repeat(40)}`, 100)).toEqual({ kind: "none" });
  });
  test("Content-Range", () => {
    expect(parseContentRange("bytes 10-19/100")).toEqual({ start: 10, end: 19, size: 100 });
    expect(parseContentRange("bytes 10-19/*")).toEqual({ start: 10, end: 19, size: undefined });
    expect(parseContentRange("nonsense")).toBeUndefined();
  });
});

describe("Accept", () => {
  test("parses lists with parameters", () => {
    expect(parseAccept([`${MediaType.ociIndex}; q=0.5, ${MediaType.dockerManifest}`, "*/*"])).toEqual([MediaType.ociIndex, MediaType.dockerManifest, "*/*"]);
  });
  test("matching", () => {
    expect(acceptsMediaType([], MediaType.ociIndex)).toBe(true);
    expect(acceptsMediaType([MediaType.dockerManifest], MediaType.ociIndex)).toBe(false);
    expect(acceptsMediaType([MediaType.dockerManifest, "*/*"], MediaType.ociIndex)).toBe(true);
    expect(acceptsMediaType([MediaType.ociIndex], MediaType.ociIndex)).toBe(true);
  });
  test("media type from body", () => {
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(mediaTypeFromBody(enc({ mediaType: MediaType.dockerManifestList }))).toBe(MediaType.dockerManifestList);
    expect(mediaTypeFromBody(enc({ schemaVersion: 2, manifests: [] }))).toBe(MediaType.ociIndex);
    expect(mediaTypeFromBody(enc({ schemaVersion: 2, layers: [] }))).toBe(MediaType.ociManifest);
    expect(mediaTypeFromBody(new TextEncoder().encode("not json"))).toBeUndefined();
    // schema1 has no mediaType: signed (prettyjws) or not, it is never an OCI manifest.
    expect(mediaTypeFromBody(enc({ schemaVersion: 1, name: "a", fsLayers: [], history: [], signatures: [{}] }))).toBe(MediaType.dockerSchema1Signed);
    expect(mediaTypeFromBody(enc({ schemaVersion: 1, name: "a", fsLayers: [], history: [] }))).toBe(MediaType.dockerSchema1);
  });
});

describe("WWW-Authenticate", () => {
  test("Docker Hub bearer challenge", () => {
    const [c] = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"');
    expect(c).toEqual({ scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/nginx:pull" } });
  });
  test("several challenges, unquoted values, escapes, odd spacing", () => {
    const cs = parseChallenges('Basic realm="x\\"y", Bearer realm=https://a/token , service=svc,scope="repository:a/b:pull,push"');
    expect(cs).toEqual([
      { scheme: "basic", params: { realm: 'x"y' } },
      { scheme: "bearer", params: { realm: "https://a/token", service: "svc", scope: "repository:a/b:pull,push" } },
    ]);
  });
  test("empty and scheme-only", () => {
    expect(parseChallenges(null)).toEqual([]);
    expect(parseChallenges("Negotiate")).toEqual([{ scheme: "negotiate", params: {} }]);
  });
});
