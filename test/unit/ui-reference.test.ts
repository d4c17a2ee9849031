// The image-reference parser (src/protocol/image-reference.ts) and the landing page's converter (src/ui/reference.ts), also run in the browser.
import { describe, expect, test } from "bun:test";
import { parseReference } from "../../src/protocol/image-reference.ts";
import { mirrorHostOf, toMirrorReference, type ServedRegistry } from "../../src/ui/reference.ts";

const MIRROR = "mirror.example.com";
const REGISTRIES: ServedRegistry[] = [
  { name: "docker.io", hosts: [] },
  { name: "ghcr.io", hosts: ["ghcr.mirror.example.com"] },
  { name: "registry.k8s.io", hosts: [] },
  { name: "quay.io", hosts: [] },
];
const DIGEST = `sha256:${"0123456789abcdef".repeat(4)}`;

function mirror(input: string): string {
  const r = toMirrorReference(input, MIRROR, REGISTRIES);
  if (!r.ok) throw new Error(`expected a reference for ${input}, got: ${r.error}`);
  return r.mirror;
}

function problem(input: string): string {
  const r = toMirrorReference(input, MIRROR, REGISTRIES);
  if (r.ok) throw new Error(`expected an error for ${input}, got ${r.mirror}`);
  return r.error;
}

describe("toMirrorReference", () => {
  test("Docker Hub short names get library/ and no registry prefix", () => {
    expect(mirror("nginx")).toBe("mirror.example.com/library/nginx");
    expect(mirror("nginx:1.27")).toBe("mirror.example.com/library/nginx:1.27");
    expect(mirror("grafana/grafana:12.0.0")).toBe("mirror.example.com/grafana/grafana:12.0.0");
    expect(mirror("docker.io/nginx")).toBe("mirror.example.com/library/nginx");
    expect(mirror("index.docker.io/library/redis:7")).toBe("mirror.example.com/library/redis:7");
    expect(mirror(`docker.io/library/redis@${DIGEST}`)).toBe(`mirror.example.com/library/redis@${DIGEST}`);
    expect(mirror(`redis:7@${DIGEST}`)).toBe(`mirror.example.com/library/redis:7@${DIGEST}`);
  });

  test("other registries keep their name as a path prefix", () => {
    expect(mirror("ghcr.io/a/b:1")).toBe("mirror.example.com/ghcr.io/a/b:1");
    expect(mirror("registry.k8s.io/pause:3.9")).toBe("mirror.example.com/registry.k8s.io/pause:3.9");
    expect(mirror("quay.io/prometheus/prometheus")).toBe("mirror.example.com/quay.io/prometheus/prometheus");
    expect(mirror("GHCR.IO/a/b")).toBe("mirror.example.com/ghcr.io/a/b");
  });

  test("the details: registry, repository, tag, digest, upstream and host aliases", () => {
    expect(toMirrorReference("ghcr.io/owner/app:2", MIRROR, REGISTRIES)).toEqual({
      ok: true,
      registry: "ghcr.io",
      repository: "owner/app",
      tag: "2",
      upstream: "ghcr.io/owner/app:2",
      mirror: "mirror.example.com/ghcr.io/owner/app:2",
      aliases: ["ghcr.mirror.example.com/owner/app:2"],
    });
    const hub = toMirrorReference("nginx", MIRROR, REGISTRIES);
    expect(hub).toMatchObject({ ok: true, registry: "docker.io", repository: "library/nginx", upstream: "docker.io/library/nginx", aliases: [] });
    expect(hub.ok && hub.tag).toBeUndefined();
  });

  test("registries this mirror does not serve are named as such", () => {
    expect(problem("localhost:5000/x")).toBe("localhost:5000 is not served by this mirror (it serves docker.io, ghcr.io, registry.k8s.io, quay.io)");
    expect(problem("gcr.io/distroless/static")).toContain("gcr.io is not served");
    expect(problem("192.168.1.10:5000/team/app:1")).toContain("192.168.1.10:5000 is not served");
  });

  test("references to the mirror itself or its host aliases are recognized", () => {
    expect(mirror("mirror.example.com/ghcr.io/a/b:1")).toBe("mirror.example.com/ghcr.io/a/b:1");
    expect(mirror("mirror.example.com/library/nginx")).toBe("mirror.example.com/library/nginx");
    expect(mirror("mirror.example.com/nginx")).toBe("mirror.example.com/library/nginx");
    expect(mirror("ghcr.mirror.example.com/a/b")).toBe("mirror.example.com/ghcr.io/a/b");
  });

  test("what people paste around a reference is tolerated", () => {
    expect(mirror("  nginx:1.27 ")).toBe("mirror.example.com/library/nginx:1.27");
    expect(mirror("docker pull ghcr.io/a/b:1")).toBe("mirror.example.com/ghcr.io/a/b:1");
    expect(mirror("sudo podman pull quay.io/x/y")).toBe("mirror.example.com/quay.io/x/y");
    expect(mirror("docker://registry.k8s.io/pause:3.9")).toBe("mirror.example.com/registry.k8s.io/pause:3.9");
  });

  test("invalid references say what is wrong", () => {
    expect(problem("")).toContain("type an image reference");
    expect(problem("Nginx/foo")).toContain("nginx is not served"); // an upper-case first component is a host, as Docker decides
    expect(problem("library/Nginx")).toBe("repository names must be lowercase");
    expect(problem("nginx:-bad")).toContain("not a valid tag");
    expect(problem("nginx@sha256:abc")).toContain("not a digest");
    expect(problem(`nginx@sha256:${"a".repeat(63)}`)).toBe("a sha256 digest has 64 hex digits");
    expect(problem("a b")).toContain("no spaces");
    expect(problem("/nginx")).toContain("does not start with /");
    expect(problem("ghcr.io/")).toContain("names no repository");
    expect(problem("foo..bar")).toContain("not a valid repository name");
    expect(problem(`<img src=x onerror=alert(1)>`)).toBeString();
  });
});

describe("parseReference and mirrorHostOf", () => {
  test("parse", () => {
    expect(parseReference("nginx")).toEqual({ domain: "docker.io", path: "library/nginx" });
    expect(parseReference("localhost/x:1")).toEqual({ domain: "localhost", path: "x", tag: "1" });
    expect(parseReference("[::1]:5000/x")).toEqual({ domain: "[::1]:5000", path: "x" });
    expect(parseReference(`a/b@${DIGEST}`)).toEqual({ domain: "docker.io", path: "a/b", digest: DIGEST });
  });

  test("mirror host of a URL", () => {
    expect(mirrorHostOf("https://mirror.example.com/")).toBe("mirror.example.com");
    expect(mirrorHostOf("http://127.0.0.1:5000")).toBe("127.0.0.1:5000");
  });
});
