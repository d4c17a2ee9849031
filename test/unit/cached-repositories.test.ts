// /api/repositories over a real SQLite meta store with many repositories: every
// repository, tag, digest, image size, time and policy in the answer is the one written,
// and a write between two calls (a moved tag, a new tag or repository, a pull) shows in
// the next answer, whatever the listing keeps between calls.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import type { RepositoryRef } from "../../src/cache/meta-store.ts";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { Mirror } from "../../src/registry/mirror.ts";
import { statusApi, type StatusView } from "../../src/server/status-api.ts";
import { OTHER_REGISTRIES_OFF } from "../harness/oci.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const REPOSITORIES = 400;

const dir = mkdtempSync(join(tmpdir(), "ferry-repositories-"));
const meta = new SqliteMetaStore(dir);
const config = parseConfig(`[cache]
dir = "${dir}"
tag_ttl = "10m"
${OTHER_REGISTRIES_OFF}
[[registry]]
name = "docker.io"
endpoints = ["http://127.0.0.1:9"]
immutable_tags = ["v[0-9]+"]
[[registry.tag_policy]]
repositories = "pinned/*"
tag_ttl = "1h"
`);
const mirror = new Mirror(config, meta, new FsBlobStore(dir), createLogger("silent"));
const api = statusApi({ repositories: () => mirror.cachedRepositories() } as StatusView);
afterAll(() => {
  mirror.close();
  meta.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Tag {
  tag: string;
  digest: string;
  mediaType: string;
  size: number | null;
  checkedAt: string;
  pulledAt: string | null;
  policy: { immutable: boolean; ttlSeconds: number | null; rule: string };
}
/** What the answer should say, kept by the test as it writes. */
const expected = new Map<string, { registry: string; repository: string; tags: Map<string, Tag> }>();
const hex = (n: number) => n.toString(16).padStart(64, "0");
const iso = (ms: number) => new Date(ms).toISOString();
let clock = Date.parse("2026-11-01T00:00:00.000Z");

function expectedRepo(repo: RepositoryRef) {
  const id = `${repo.registry}/${repo.repository}`;
  let entry = expected.get(id);
  if (!entry) expected.set(id, (entry = { ...repo, tags: new Map() }));
  return entry;
}

function policyOf(repo: RepositoryRef, tag: string): Tag["policy"] {
  if (repo.registry !== "docker.io") return { immutable: false, ttlSeconds: 600, rule: "cache.tag_ttl" };
  const rule = repo.repository.startsWith("pinned/") ? "docker.io tag_policy[0] (pinned/*)" : "docker.io";
  if (/^v[0-9]+$/.test(tag)) return { immutable: true, ttlSeconds: null, rule };
  return { immutable: false, ttlSeconds: rule === "docker.io" ? 600 : 3600, rule };
}

/** An image manifest whose config and layers add up to `size`; cached, and its tag pointed at it. */
async function putImage(repo: RepositoryRef, tag: string, seed: number, o: { index?: boolean; manifestCached?: boolean } = {}) {
  const size = 1000 + seed * 7;
  const body = new TextEncoder().encode(
    JSON.stringify(
      o.index
        ? { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: `sha256:${hex(seed)}`, size: 500, platform: { architecture: "amd64", os: "linux" } }] }
        : {
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${hex(seed + 1)}`, size: 100 },
            layers: [
              { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${hex(seed + 2)}`, size: size - 400 },
              { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${hex(seed + 3)}`, size: 300 },
            ],
          },
    ),
  );
  const mediaType = o.index ? OCI_INDEX : OCI_MANIFEST;
  const digest = digestOf(body);
  if (o.manifestCached !== false) await meta.putManifest(repo, { digest, mediaType, body });
  clock += 1000;
  await meta.putTag(repo, tag, { digest, mediaType, size: body.byteLength, checkedAt: clock });
  const previous = expectedRepo(repo).tags.get(tag);
  expectedRepo(repo).tags.set(tag, {
    tag,
    digest,
    mediaType,
    size: o.index || o.manifestCached === false ? null : size,
    checkedAt: iso(clock),
    pulledAt: previous?.pulledAt ?? null,
    policy: policyOf(repo, tag),
  });
}

function pulled(repo: RepositoryRef, tag: string) {
  clock += 1000;
  meta.touchTag(repo, tag, clock);
  expectedRepo(repo).tags.get(tag)!.pulledAt = iso(clock);
}

async function answer(): Promise<unknown> {
  const res = await api.handle(new Request("http://ferry.test/api/repositories"));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("application/json");
  return res.json();
}

function expectedAnswer() {
  const repositories = [...expected.values()]
    .sort((a, b) => (a.registry === b.registry ? (a.repository < b.repository ? -1 : 1) : a.registry < b.registry ? -1 : 1))
    .map((r) => ({ registry: r.registry, repository: r.repository, tags: [...r.tags.values()].sort((a, b) => (a.tag < b.tag ? -1 : 1)) }));
  return { repositories };
}

const lib = (i: number) => ({ registry: "docker.io", repository: `library/app-${String(i).padStart(4, "0")}` });

test("/api/repositories lists every repository and tag with its digest, image size, times and policy; later writes show in the next answer", async () => {
  let seed = 0;
  for (let i = 0; i < REPOSITORIES; i++) {
    await putImage(lib(i), "latest", (seed += 10));
    await putImage(lib(i), "v1", (seed += 10));
  }
  const pinned = { registry: "docker.io", repository: "pinned/tool" };
  await putImage(pinned, "latest", (seed += 10));
  await putImage(pinned, "v2", (seed += 10));
  await putImage({ registry: "docker.io", repository: "library/multi" }, "latest", (seed += 10), { index: true });
  await putImage({ registry: "docker.io", repository: "library/gone" }, "old", (seed += 10), { manifestCached: false });
  await putImage({ registry: "registry.example", repository: "team/svc" }, "stable", (seed += 10));
  // A repository with a cached manifest and no tag (pulled by digest only).
  const byDigest = { registry: "docker.io", repository: "library/by-digest" };
  const body = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: `sha256:${hex(1)}`, size: 1 }, layers: [] }));
  await meta.putManifest(byDigest, { digest: digestOf(body), mediaType: OCI_MANIFEST, body });
  expectedRepo(byDigest);
  // Pulls not yet written to the database (touches are written behind).
  pulled(lib(0), "latest");
  pulled(pinned, "v2");

  const first = (await answer()) as { repositories: { tags: Tag[] }[] };
  expect(first.repositories).toHaveLength(REPOSITORIES + 5);
  expect(first).toEqual(expectedAnswer());

  // Between two calls: a tag moves to a new image, another to an index, a tag and a
  // repository are added, a tag is pulled.
  await putImage(lib(1), "latest", (seed += 10));
  await putImage(lib(2), "latest", (seed += 10), { index: true });
  await putImage(lib(3), "edge", (seed += 10));
  await putImage({ registry: "docker.io", repository: "library/zz-new" }, "1.0", (seed += 10));
  pulled(lib(4), "v1");
  const second = await answer();
  expect(second).toEqual(expectedAnswer());
  expect(second).not.toEqual(first);
  expect(await answer()).toEqual(second); // nothing written: the same answer

  // Another process on the same cache dir (`ferry prune`, a second ferry) writes through
  // its own connection: its tag shows in the next answer, and its prune removes tags.
  const other = new SqliteMetaStore(dir);
  const writer = { registry: "docker.io", repository: "library/app-0005" };
  const moved = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: `sha256:${hex(2)}`, size: 40 }, layers: [{ digest: `sha256:${hex(3)}`, size: 2 }] }));
  await other.putManifest(writer, { digest: digestOf(moved), mediaType: OCI_MANIFEST, body: moved });
  clock += 1000;
  await other.putTag(writer, "latest", { digest: digestOf(moved), mediaType: OCI_MANIFEST, size: moved.byteLength, checkedAt: clock });
  Object.assign(expectedRepo(writer).tags.get("latest")!, { digest: digestOf(moved), size: 42, checkedAt: iso(clock) });
  expect(await answer()).toEqual(expectedAnswer());
  // Every tag not confirmed or pulled since the one just written is pruned; the manifests
  // stay (cached after the cutoff), so only the repository without one goes.
  const pruned = await other.pruneOlderThan(clock, false);
  other.close();
  let old = 0;
  for (const repo of expected.values()) for (const [tag, t] of repo.tags) if (Date.parse(t.pulledAt ?? t.checkedAt) < clock && repo.tags.delete(tag)) old++;
  expect(pruned).toEqual({ tags: old, manifests: 0 });
  expect(old).toBeGreaterThan(2 * REPOSITORIES);
  expected.delete("docker.io/library/gone");
  const afterPrune = (await answer()) as { repositories: { tags: unknown[] }[] };
  expect(afterPrune).toEqual(expectedAnswer());
  expect(afterPrune.repositories.flatMap((r) => r.tags)).toHaveLength(1);
});

test("a manifest an older version cached (no image size stored with it) still shows its size, and gets it stored", async () => {
  const old = mkdtempSync(join(tmpdir(), "ferry-repositories-old-"));
  try {
    const store = new SqliteMetaStore(old); // makes the schema
    store.close();
    // What an older ferry writes: manifests without naming columns, tags with them.
    const { Database } = await import("bun:sqlite");
    const db = new Database(join(old, "meta.sqlite"), { strict: true });
    const body = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: `sha256:${hex(5)}`, size: 11 }, layers: [{ digest: `sha256:${hex(6)}`, size: 22 }] }));
    const digest = digestOf(body);
    db.query("INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?, ?)").run("docker.io", "library/older", digest, OCI_MANIFEST, body, Date.now());
    db.query("INSERT INTO tags (registry, repository, tag, digest, media_type, size, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?)").run("docker.io", "library/older", "1", digest, OCI_MANIFEST, body.byteLength, clock);
    const reopened = new SqliteMetaStore(old);
    const listed = await reopened.listRepositoryTags();
    reopened.close();
    expect(listed).toEqual([{ registry: "docker.io", repository: "library/older", tags: [{ tag: "1", digest, mediaType: OCI_MANIFEST, size: body.byteLength, checkedAt: clock, pulledAt: undefined, imageSize: 33 }] }]);
    expect(db.query("SELECT registry, repository, digest, size FROM image_sizes").all()).toEqual([{ registry: "docker.io", repository: "library/older", digest, size: 33 }]);
    db.close();
  } finally {
    rmSync(old, { recursive: true, force: true });
  }
});
