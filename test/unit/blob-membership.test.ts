// Issue 16 item 2: which repository a cached blob belongs to, as BlobService asks it under
// passthrough_auth. After a restart nothing is noted in memory: the repository's cached
// manifests (by tag, through an index to its platform manifests) still say what it holds.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { BlobMembership } from "../../src/registry/blob-membership.ts";

const dir = mkdtempSync(join(tmpdir(), "ferry-membership-"));
const meta = new SqliteMetaStore(dir);
afterAll(() => {
  meta.close();
  rmSync(dir, { recursive: true, force: true });
});

const d = (c: string) => `sha256:${c.repeat(64)}`;
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

test("a blob belongs to the repositories whose cached manifests refer to it, and to no other", async () => {
  const app = { registry: "quay.io", repository: "private/app" };
  const pub = { registry: "quay.io", repository: "org/public" };
  const platform = json({ schemaVersion: 2, config: { digest: d("c") }, layers: [{ digest: d("1") }, { digest: d("2") }] });
  const index = json({ schemaVersion: 2, manifests: [{ digest: d("p") }] });
  await meta.putManifest(app, { digest: d("p"), mediaType: "application/vnd.oci.image.manifest.v1+json", body: platform });
  await meta.putManifest(app, { digest: d("i"), mediaType: "application/vnd.oci.image.index.v1+json", body: index });
  await meta.putTag(app, "1", { digest: d("i"), mediaType: "application/vnd.oci.image.index.v1+json", size: index.byteLength, checkedAt: Date.now() });

  const restarted = new BlobMembership(meta);
  for (const blob of [d("c"), d("1"), d("2")]) expect(await restarted.has(app, blob)).toBe(true);
  expect(await restarted.has(pub, d("1"))).toBe(false);
  expect(await restarted.has(app, d("9"))).toBe(false);
  expect(await restarted.has({ registry: "ghcr.io", repository: "private/app" }, d("1"))).toBe(false);

  // What a served manifest names, or the upstream confirmed, is known at once.
  restarted.noteManifest(pub, json({ layers: [{ digest: d("3") }], config: { digest: d("4") } }));
  restarted.note(pub, d("5"));
  for (const blob of [d("3"), d("4"), d("5")]) expect(await restarted.has(pub, blob)).toBe(true);
  restarted.noteManifest(pub, new TextEncoder().encode("not json"));
  expect(await restarted.has(pub, d("1"))).toBe(false);
});
