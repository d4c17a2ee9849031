// Issue 19.2, tag policy: per registry and per repository pattern, tag_ttl and
// immutable_tags. An immutable tag's cached mapping is never revalidated (even after
// upstream moved the tag), a digest pull never touches upstream, and /api/repositories
// and `ferry check` say which policy a tag got. Upstream = real distribution (harness);
// client = skopeo; request counts come from the upstream's own access log.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { skopeoInspect } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, hubRegistry, OTHER_REGISTRIES_OFF, sha256 } from "../harness/oci.ts";

const ROOT = resolve(import.meta.dir, "../..");
let upstream: Upstream;
let ferry: FerryProcess;
let first: BuiltImage;
let second: BuiltImage;

// [cache] tag_ttl = 0s: every mutable tag is revalidated on every pull, so a pull that
// does not reach upstream can only be the policy's doing.
const POLICY = `immutable_tags = ["v?[0-9]+\\\\.[0-9]+\\\\.[0-9]+"]
[[registry.tag_policy]]
repositories = "pinned/*"
tag_ttl = "1h"
`;

beforeAll(async () => {
  upstream = await startUpstream();
  first = await fiveLayer({ seed: "tag-policy-1" });
  second = await fiveLayer({ seed: "tag-policy-2" });
  for (const ref of ["library/app:latest", "library/app:v1.2.3", "pinned/app:latest"]) await upstream.push(first, ref);
  ferry = await startFerry({ tagTtl: "0s", config: `${OTHER_REGISTRIES_OFF}\n${hubRegistry(upstream.url, POLICY)}` });
}, 180_000);

afterAll(async () => {
  await ferry?.stop();
  await upstream?.stop();
});

async function pull(name: string, reference: string): Promise<Response> {
  const r = await fetch(`${ferry.url}/v2/${name}/manifests/${reference}`, { headers: { Accept: ACCEPT } });
  expect(r.status).toBe(200);
  return r;
}

const upstreamManifestRequests = (name: string, reference: string) => upstream.count({ server: "front", pathIncludes: `/v2/${name}/manifests/${reference}` });

describe("tag policy", () => {
  test("immutable and per-repository tags are served without asking upstream; mutable ones are revalidated", async () => {
    for (const [name, tag] of [["library/app", "latest"], ["library/app", "v1.2.3"], ["pinned/app", "latest"]] as const) {
      const r = await pull(name, tag);
      expect(r.headers.get("docker-content-digest")).toBe(first.manifestDigest);
    }
    upstream.clearLog();
    for (const [name, tag] of [["library/app", "latest"], ["library/app", "v1.2.3"], ["pinned/app", "latest"]] as const) {
      const r = await pull(name, tag);
      expect(r.headers.get("x-ferry-cache")).toBe("hit");
    }
    expect(upstream.count({ server: "front", method: "HEAD", pathIncludes: "/v2/library/app/manifests/latest" })).toBe(1);
    expect(upstreamManifestRequests("library/app", "v1.2.3")).toBe(0);
    expect(upstreamManifestRequests("pinned/app", "latest")).toBe(0);
    // A digest pull never touches upstream once cached.
    const byDigest = await pull("library/app", first.manifestDigest);
    expect(sha256(await byDigest.arrayBuffer())).toBe(first.manifestDigest);
    expect(upstreamManifestRequests("library/app", first.manifestDigest)).toBe(0);
  }, 60_000);

  test("an immutable tag moved upstream keeps its cached digest (skopeo); a mutable one follows", async () => {
    await upstream.push(second, "library/app:v1.2.3");
    await upstream.push(second, "library/app:latest");
    upstream.clearLog();
    const pinned = await skopeoInspect(`docker://${ferry.host}/library/app:v1.2.3`, ["--raw"]);
    expect(pinned.code).toBe(0);
    expect(sha256(new TextEncoder().encode(pinned.stdout))).toBe(first.manifestDigest);
    expect(upstreamManifestRequests("library/app", "v1.2.3")).toBe(0);
    const moved = await skopeoInspect(`docker://${ferry.host}/library/app:latest`, ["--raw"]);
    expect(moved.code).toBe(0);
    expect(sha256(new TextEncoder().encode(moved.stdout))).toBe(second.manifestDigest);
  }, 60_000);

  test("/api/repositories shows which policy each tag got", async () => {
    const r = await fetch(`${ferry.url}/api/repositories`);
    expect(r.status).toBe(200);
    const { repositories } = (await r.json()) as { repositories: { registry: string; repository: string; tags: { tag: string; policy: unknown }[] }[] };
    const policyOf = (repository: string, tag: string) => repositories.find((x) => x.repository === repository)?.tags.find((t) => t.tag === tag)?.policy;
    expect(policyOf("library/app", "v1.2.3")).toEqual({ immutable: true, ttlSeconds: null, rule: "docker.io" });
    expect(policyOf("library/app", "latest")).toEqual({ immutable: false, ttlSeconds: 0, rule: "docker.io" });
    expect(policyOf("pinned/app", "latest")).toEqual({ immutable: false, ttlSeconds: 3600, rule: "docker.io tag_policy[0] (pinned/*)" });
  });

  test("ferry check lists the rules and says which policy a named tag gets", async () => {
    const config = join(ferry.dir, "check.toml");
    writeFileSync(config, `[cache]\ndir = "${join(ferry.dir, "check-cache")}"\ntag_ttl = "5m"\n${OTHER_REGISTRIES_OFF}\n${hubRegistry(upstream.url, POLICY)}`);
    const run = async (args: string[]) => {
      const proc = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/main.ts"), "check", "--config", config, ...args], { stdout: "pipe", stderr: "pipe" });
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      const stdout = await new Response(proc.stdout).text();
      clearTimeout(timer);
      return { code: await proc.exited, stdout };
    };
    const rules = await run([]);
    expect(rules.code).toBe(0);
    expect(rules.stdout).toMatch(/docker\.io tag_policy\[0\]\s+pinned\/\*\s+1h/);
    const tags = await run(["alpine:3.19.1", "pinned/app", "ghcr.io/o/i:v1.0.0"]);
    expect(tags.stdout).toMatch(/docker\.io\/library\/alpine:3\.19\.1\s+immutable: never revalidated\s+docker\.io/);
    expect(tags.stdout).toMatch(/docker\.io\/pinned\/app:latest\s+revalidated after 1h\s+docker\.io tag_policy\[0\] \(pinned\/\*\)/);
    expect(tags.stdout).toMatch(/ghcr\.io\/o\/i:v1\.0\.0\s+revalidated after 5m\s+cache\.tag_ttl/);
  }, 60_000);
});
