import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { RegistryError } from "../../src/protocol/errors.ts";
import { parseApiPath, routeName } from "../../src/routing/route.ts";

const SHA = `sha256:${"c".repeat(64)}`;
const registries = parseConfig('[[registry]]\nname = "ghcr.io"\nhosts = ["ghcr.example.com"]').registries;

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof RegistryError ? e.code : "not a RegistryError";
  }
  return undefined;
}

describe("API paths", () => {
  test("each endpoint", () => {
    expect(parseApiPath("")).toEqual({ kind: "base" });
    expect(parseApiPath("_catalog")).toEqual({ kind: "catalog" });
    expect(parseApiPath("library/alpine/manifests/latest")).toEqual({ kind: "manifest", name: "library/alpine", reference: "latest" });
    expect(parseApiPath(`a/manifests/b/manifests/${SHA}`)).toEqual({ kind: "manifest", name: "a/manifests/b", reference: SHA });
    expect(parseApiPath(`ghcr.io/o/i/blobs/${SHA}`)).toEqual({ kind: "blob", name: "ghcr.io/o/i", digest: SHA });
    expect(parseApiPath("x/tags/list")).toEqual({ kind: "tags", name: "x" });
    expect(parseApiPath("x/blobs/uploads/")).toEqual({ kind: "upload", name: "x" });
    expect(parseApiPath(`ghcr.io/o/i/referrers/${SHA}`)).toEqual({ kind: "referrers", name: "ghcr.io/o/i", digest: SHA });
  });
  test("bad references", () => {
    expect(errorCode(() => parseApiPath("x/manifests/sha256:123"))).toBe("DIGEST_INVALID");
    expect(errorCode(() => parseApiPath("x/blobs/latest"))).toBe("DIGEST_INVALID");
    expect(errorCode(() => parseApiPath("x/referrers/latest"))).toBe("DIGEST_INVALID");
    expect(errorCode(() => parseApiPath("x/referrers/sha256:123"))).toBe("DIGEST_INVALID");
    expect(errorCode(() => parseApiPath("x/manifests/-bad"))).toBe("TAG_INVALID");
    expect(errorCode(() => parseApiPath("x/whatever"))).toBe("NAME_UNKNOWN");
  });
});

describe("registry routing", () => {
  test("default registry is Docker Hub with library/", () => {
    expect(routeName("alpine", {}, registries)).toMatchObject({ repository: "library/alpine", via: "default", registry: { name: "docker.io" } });
    expect(routeName("grafana/grafana", {}, registries)).toMatchObject({ repository: "grafana/grafana" });
  });
  test("path prefix", () => {
    expect(routeName("ghcr.io/owner/img", {}, registries)).toMatchObject({ repository: "owner/img", via: "prefix", registry: { name: "ghcr.io" } });
    expect(routeName("docker.io/nginx", {}, registries)).toMatchObject({ repository: "library/nginx", registry: { name: "docker.io" } });
  });
  test("containerd ?ns=", () => {
    expect(routeName("owner/img", { ns: "quay.io" }, registries)).toMatchObject({ repository: "owner/img", via: "ns", registry: { name: "quay.io" } });
    expect(routeName("library/alpine", { ns: "docker.io" }, registries)).toMatchObject({ repository: "library/alpine", via: "ns" });
  });
  test("?ns= and a hosts entry take the path as the repository, verbatim (containerd's gcr.io/google.com/...)", () => {
    const gcr = parseConfig('[[registry]]\nname = "gcr.io"\nhosts = ["gcr.example.com"]').registries;
    expect(routeName("google.com/cloudsdktool/cloud-sdk", { ns: "gcr.io" }, gcr)).toMatchObject({ repository: "google.com/cloudsdktool/cloud-sdk", via: "ns", registry: { name: "gcr.io" } });
    expect(routeName("google.com/cloudsdktool/cloud-sdk", { host: "gcr.example.com" }, gcr)).toMatchObject({ repository: "google.com/cloudsdktool/cloud-sdk", via: "host", registry: { name: "gcr.io" } });
    // ns names the registry even when the path starts with another registry's name.
    expect(routeName("ghcr.io/owner/img", { ns: "quay.io" }, registries)).toMatchObject({ repository: "ghcr.io/owner/img", via: "ns", registry: { name: "quay.io" } });
    // A Host that names no registry leaves the prefix in charge.
    expect(routeName("ghcr.io/owner/img", { host: "mirror.example.com" }, registries)).toMatchObject({ repository: "owner/img", via: "prefix" });
  });
  test("Host header", () => {
    expect(routeName("owner/img", { host: "ghcr.example.com:5000" }, registries)).toMatchObject({ via: "host", registry: { name: "ghcr.io" } });
    expect(routeName("owner/img", { host: "other.example.com" }, registries)).toMatchObject({ via: "default", registry: { name: "docker.io" } });
  });
  test("unknown registries and invalid names", () => {
    expect(errorCode(() => routeName("evil.example.com/x", {}, registries))).toBe("NAME_UNKNOWN");
    expect(errorCode(() => routeName("x", { ns: "evil.example.com" }, registries))).toBe("NAME_UNKNOWN");
    expect(errorCode(() => routeName("ghcr.io/..%2f", {}, registries))).toBe("NAME_INVALID");
    expect(errorCode(() => routeName("Upper/x", {}, registries))).toBe("NAME_INVALID");
  });
});
