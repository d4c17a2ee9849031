// A blob download that breaks mid-body resumes through the tiers (UpstreamBlobSource over a
// real Upstream, tiny in-process registries as tiers): a resume asks only tiers that are
// not resting, or else the one whose body just broke, and never pays a resting tier's
// timeout again; a failure to open is not blamed on the tier whose body broke before.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { BlobDownload } from "../../src/registry/blob-download.ts";
import { UpstreamBlobSource } from "../../src/registry/blob-sources.ts";
import { TokenCache } from "../../src/upstream/auth.ts";
import { RegistryClient } from "../../src/upstream/registry-client.ts";
import { Upstream } from "../../src/upstream/upstream.ts";
import { endpointConfig, hanging, registryConfig, tinyRegistriesPerTest, type TinyRegistry } from "./support/tiny-registry.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const registry = tinyRegistriesPerTest();

/**
 * The blob's first third, then a reset, as a relay whose connection drops mid-body. A 206
 * with Content-Range carries the size (Bun.serve drops Content-Length from a stream).
 */
function breaksMidBody(blob: Uint8Array): Response {
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent) return c.error(new Error("connection reset"));
      sent = true;
      c.enqueue(blob.subarray(0, Math.floor(blob.byteLength / 3)));
    },
  });
  return new Response(body, { status: 206, headers: { "Content-Range": `bytes 0-${blob.byteLength - 1}/${blob.byteLength}`, "Content-Type": "application/octet-stream" } });
}

async function download(tiers: TinyRegistry[], digest: string, timeoutMs: number) {
  const dir = mkdtempSync(join(tmpdir(), "ferry-resume-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FsBlobStore(dir);
  await store.init();
  const upstream = new Upstream(registryConfig(tiers.map((t) => endpointConfig(t.url, { timeoutMs }))), new TokenCache(), createLogger("silent"));
  const source = new UpstreamBlobSource(new RegistryClient(upstream), "library/app", { registry: "docker.io", digest });
  const key = { registry: "docker.io", digest };
  const d = BlobDownload.start({ key, source, createWriter: (size) => store.begin(key, size), log: createLogger("silent") });
  return { d, upstream };
}

test("tiers [hanging, breaks mid-body]: the resumes don't ask the hanging tier again (its timeout is paid once)", async () => {
  const hang = registry();
  const relay = registry();
  const blob = new Uint8Array(90_000).map((_, i) => i & 0xff);
  const digest = relay.putBlob("library/app", blob);
  hang.fault = () => hanging();
  relay.fault = (req, url) => (url.pathname.includes("/blobs/") && req.method === "GET" ? breaksMidBody(blob) : undefined);
  const { d, upstream } = await download([hang, relay], digest, 400);
  await d.finished;
  expect(d.state).toBe("failed");
  // The hanging tier was asked once (its timeout paid once); every resume went to the relay.
  expect(hang.count({ pathIncludes: "/blobs/" })).toBe(1);
  expect(relay.count({ pathIncludes: "/blobs/" })).toBeGreaterThanOrEqual(2); // the first body and at least one resume
  // The relay is blamed for its own broken bodies, never for the hanging tier's timeout.
  const relayStatus = upstream.status().find((e) => e.url === relay.url)!;
  expect(relayStatus.lastError ?? "").not.toContain(hang.url);
});

test("tiers [breaks mid-body once, healthy]: the resume goes to the healthy tier from the byte reached", async () => {
  const flaky = registry();
  const good = registry();
  const blob = new Uint8Array(90_000).map((_, i) => (i * 7) & 0xff);
  const digest = good.putBlob("library/app", blob);
  flaky.putBlob("library/app", blob);
  flaky.fault = (req, url) => (url.pathname.includes("/blobs/") && req.method === "GET" ? breaksMidBody(blob) : undefined);
  const { d } = await download([flaky, good], digest, 2_000);
  await d.finished;
  expect(d.error?.message).toBeUndefined();
  expect(d.state).toBe("done");
  expect(flaky.count({ pathIncludes: "/blobs/" })).toBe(1);
  expect(good.log.filter((l) => l.path.includes("/blobs/")).length).toBe(1);
});
