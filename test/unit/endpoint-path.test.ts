// Issue 19.4: the URL schemes of secondary mirrors (path prefix, containerd's ?ns=).
import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { endpointPath } from "../../src/upstream/endpoint.ts";

describe("endpoint paths", () => {
  test("a repository prefix goes in front of every repository path, not /v2/ itself", () => {
    expect(endpointPath("/v2/library/alpine/manifests/latest", "docker.io")).toBe("/v2/docker.io/library/alpine/manifests/latest");
    expect(endpointPath("/v2/owner/img/blobs/sha256:abc", "mirror/ghcr.io")).toBe("/v2/mirror/ghcr.io/owner/img/blobs/sha256:abc");
    expect(endpointPath("/v2/", "docker.io")).toBe("/v2/");
    expect(endpointPath("/v2/x/tags/list?n=1", "docker.io")).toBe("/v2/docker.io/x/tags/list?n=1");
    // A next-page Link the prefixed endpoint sent already carries it.
    expect(endpointPath("/v2/docker.io/x/tags/list?last=a&n=1", "docker.io")).toBe("/v2/docker.io/x/tags/list?last=a&n=1");
  });
  test("ns is added to every request, replacing one already there; the rest of the query is kept as is", () => {
    expect(endpointPath("/v2/", undefined, "ghcr.io")).toBe("/v2/?ns=ghcr.io");
    expect(endpointPath("/v2/o/i/referrers/sha256:abc?artifactType=application/spdx+json", undefined, "ghcr.io")).toBe("/v2/o/i/referrers/sha256:abc?artifactType=application/spdx+json&ns=ghcr.io");
    expect(endpointPath("/v2/o/i/tags/list?ns=ghcr.io&last=b", undefined, "ghcr.io")).toBe("/v2/o/i/tags/list?last=b&ns=ghcr.io");
    expect(endpointPath("/v2/o/i/manifests/1", "ghcr.io", "ghcr.io")).toBe("/v2/ghcr.io/o/i/manifests/1?ns=ghcr.io");
    expect(endpointPath("/v2/o/i/manifests/1")).toBe("/v2/o/i/manifests/1");
  });
  test("config: endpoint options, validated", () => {
    const c = parseConfig(`[[registry]]\nname = "ghcr.io"\nendpoints = ["https://ghcr.io", { url = "https://m.daocloud.io", repository_prefix = "/ghcr.io/" }, { url = "https://mirror.example.com", ns = "ghcr.io" }]`);
    const gh = c.registries.find((r) => r.name === "ghcr.io")!;
    expect(gh.endpoints.map((e) => [e.repositoryPrefix, e.ns])).toEqual([[undefined, undefined], ["ghcr.io", undefined], [undefined, "ghcr.io"]]);
    expect(() => parseConfig(`[[registry]]\nname = "ghcr.io"\nendpoints = [{ url = "https://m.example", repository_prefix = "../x" }]`)).toThrow(new ConfigError("registry[0].endpoints[0].repository_prefix", 'a repository path prefix like "docker.io" or "mirror/ghcr.io" (got "../x")'));
    expect(() => parseConfig(`[[registry]]\nname = "ghcr.io"\nendpoints = [{ url = "https://m.example", ns = "GHCR.io/x" }]`)).toThrow(ConfigError);
  });
});
