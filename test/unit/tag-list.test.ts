// Issue 16 item 3: a passthrough client's tag list goes upstream with its own credentials
// and is cached per credential, so one client's view of a repository is never another's.
// The upstream here is an in-process fake of Upstream.request (what TagService calls).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteMetaStore } from "../../src/cache/sqlite-meta-store.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { TagService } from "../../src/registry/tags.ts";
import type { UpstreamRequest } from "../../src/upstream/endpoint.ts";
import { RegistryClient } from "../../src/upstream/registry-client.ts";
import type { Upstream } from "../../src/upstream/upstream.ts";

const dir = mkdtempSync(join(tmpdir(), "ferry-tags-"));
const meta = new SqliteMetaStore(dir);
afterAll(() => {
  meta.close();
  rmSync(dir, { recursive: true, force: true });
});

test("tags/list carries the client's credentials and is cached per credential", async () => {
  const asked: (string | undefined)[] = [];
  const upstream = {
    request: async (req: UpstreamRequest) => {
      asked.push(req.credentials?.username);
      const tags = req.credentials?.username === "owner" && req.credentials.password === "p" ? ["1", "2-private"] : ["1"];
      return { response: Response.json({ name: "org/app", tags }), endpoint: { url: "http://upstream.test" } };
    },
  } as unknown as Upstream;
  const tags = new TagService(meta, () => new RegistryClient(upstream), 60_000, createLogger("silent"));
  const repo = { registry: "quay.io", repository: "org/app" };
  expect((await tags.list(repo, { username: "owner", password: "p" })).tags).toEqual(["1", "2-private"]);
  expect((await tags.list(repo, { username: "guest", password: "g" })).tags).toEqual(["1"]);
  expect((await tags.list(repo)).tags).toEqual(["1"]);
  expect((await tags.list(repo, { username: "owner", password: "wrong" })).tags).toEqual(["1"]);
  expect((await tags.list(repo, { username: "owner", password: "p" })).tags).toEqual(["1", "2-private"]); // cached
  expect(asked).toEqual(["owner", "guest", undefined, "owner"]);
});

test("an upstream that refuses the client (401/403) is not answered from the cached tags; a 503 is", async () => {
  const repo = { registry: "quay.io", repository: "org/private" };
  await meta.putTag(repo, "secret-1", { digest: `sha256:${"a".repeat(64)}`, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 2, checkedAt: Date.now() });
  let status = 401;
  const upstream = {
    request: async () => ({
      response: Response.json({ errors: [{ code: status === 401 ? "UNAUTHORIZED" : status === 403 ? "DENIED" : "UNAVAILABLE", message: "no" }] }, { status }),
      endpoint: { url: "http://upstream.test" },
    }),
  } as unknown as Upstream;
  const tags = new TagService(meta, () => new RegistryClient(upstream), 60_000, createLogger("silent"));
  for (status of [401, 403]) {
    const error = await tags.list(repo, { username: "guest", password: String(status) }).then(() => undefined, (e: { status?: number }) => e);
    expect(error?.status).toBe(status);
  }
  status = 503;
  expect(await tags.list(repo, { username: "guest", password: "503" })).toEqual({ tags: ["secret-1"], stale: true });
});
