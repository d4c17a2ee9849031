import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const repo = { registry: "docker.io", repository: "library/app" };
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

function manifest(body: Uint8Array, mediaType: string) {
  return { digest: digestOf(body), mediaType, body };
}

describe("SqliteMetaStore retention", () => {
  test("pruneOlderThan removes tags unused since the cutoff and manifests nothing kept refers to", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-meta-"));
    dirs.push(dir);
    let clock = Date.now() - 10 * 86_400_000;
    const meta = new SqliteMetaStore(dir, () => clock);
    const child = manifest(json({ schemaVersion: 2, layers: [], config: { digest: `sha256:${"1".repeat(64)}` } }), "application/vnd.oci.image.manifest.v1+json");
    const index = manifest(json({ schemaVersion: 2, manifests: [{ digest: child.digest, mediaType: child.mediaType, size: child.body.byteLength }] }), "application/vnd.oci.image.index.v1+json");
    const stale = manifest(json({ schemaVersion: 2, layers: [{ digest: `sha256:${"2".repeat(64)}` }] }), "application/vnd.oci.image.manifest.v1+json");
    // Ten days ago: everything cached, "old" last confirmed.
    for (const m of [child, index, stale]) await meta.putManifest(repo, m);
    await meta.putTag(repo, "old", { digest: stale.digest, mediaType: stale.mediaType, size: stale.body.byteLength, checkedAt: clock });
    await meta.putTag(repo, "fresh", { digest: index.digest, mediaType: index.mediaType, size: index.body.byteLength, checkedAt: clock });
    clock = Date.now();
    meta.touchTag(repo, "fresh", clock); // pulled today
    const cutoff = clock - 86_400_000;
    expect(await meta.pruneOlderThan(cutoff, true)).toEqual({ tags: 1, manifests: 1 });
    expect(await meta.listTags(repo)).toEqual(["fresh", "old"]); // a dry run changes nothing
    expect(await meta.pruneOlderThan(cutoff, false)).toEqual({ tags: 1, manifests: 1 });
    expect(await meta.listTags(repo)).toEqual(["fresh"]);
    expect(await meta.getManifest(repo, stale.digest)).toBeUndefined();
    // The index a kept tag points at, and the platform manifest it lists, stay.
    expect((await meta.getManifest(repo, index.digest))?.digest).toBe(index.digest);
    expect((await meta.getManifest(repo, child.digest))?.digest).toBe(child.digest);
    meta.close();
  });
});
