// The lease holder's peer endpoint (server/peer-api.ts) in process, over a real BlobDownload
// and FsBlobStore: what a waiting replica receives when the holder's download fails.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import type { BlobDownload } from "../../src/registry/blob-download.ts";
import { PEER_PATH, PEER_TOKEN_HEADER } from "../../src/registry/peer-blobs.ts";
import { peerApi } from "../../src/server/peer-api.ts";
import { ScriptedSource, startDownload } from "./support/scripted-source.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const TOKEN = "peer-token-1";

async function holder(): Promise<{ downloads: Map<string, BlobDownload>; store: FsBlobStore; app: ReturnType<typeof peerApi> }> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-peer-api-"));
  dirs.push(dir);
  const store = new FsBlobStore(dir, { hashOnWorker: false });
  await store.init();
  const downloads = new Map<string, BlobDownload>();
  const mirror = {
    locks: { ownsToken: (token: string) => token === TOKEN },
    config: { registries: [{ name: "docker.io" }] },
    blobs: { inFlight: downloads },
    blobStore: store,
  } as unknown as Parameters<typeof peerApi>[0];
  return { downloads, store, app: peerApi(mirror) };
}

function peerRequest(digest: string, headers: Record<string, string> = { [PEER_TOKEN_HEADER]: TOKEN }): Request {
  return new Request(`http://holder${PEER_PATH}?registry=docker.io&digest=${encodeURIComponent(digest)}`, { headers });
}

describe("peer endpoint", () => {
  test("a download that fails before its first byte is a 502 answer, not a 200 whose body breaks", async () => {
    const { downloads, store, app } = await holder();
    const blob = new Uint8Array(10_000).fill(7);
    const digest = digestOf(blob);
    const source = new ScriptedSource(blob.byteLength, 50); // every attempt goes silent
    const download = startDownload(store, digest, source);
    downloads.set(`docker.io/${digest}`, download);
    await download.ready;
    const response = await app.handle(peerRequest(digest));
    const body = await response.text().catch((error: unknown) => `body broke: ${String(error)}`);
    expect({ status: response.status, body }).toEqual({ status: 502, body: "download failed\n" });
    await download.finished;
    expect(download.state).toBe("failed");
  });

  test("a running download is streamed whole and verified; a range from an offset is a 206", async () => {
    const { downloads, store, app } = await holder();
    const blob = new Uint8Array(10_000).map((_, i) => (i * 13) & 0xff);
    const digest = digestOf(blob);
    const source = new ScriptedSource(blob.byteLength);
    const download = startDownload(store, digest, source);
    downloads.set(`docker.io/${digest}`, download);
    await download.ready;
    const whole = app.handle(peerRequest(digest));
    const ranged = app.handle(peerRequest(digest, { [PEER_TOKEN_HEADER]: TOKEN, range: "bytes=4000-" }));
    source.push(blob.subarray(0, 5000));
    source.push(blob.subarray(5000));
    source.end();
    const [a, b] = await Promise.all([whole, ranged]);
    expect({ status: a.status, length: a.headers.get("content-length"), bytes: await a.bytes() }).toEqual({ status: 200, length: "10000", bytes: blob });
    expect({ status: b.status, range: b.headers.get("content-range"), bytes: await b.bytes() }).toEqual({ status: 206, range: "bytes 4000-9999/10000", bytes: blob.subarray(4000) });
  });

  test("a token the holder did not publish is a 403", async () => {
    const { app } = await holder();
    const response = await app.handle(peerRequest(`sha256:${"a".repeat(64)}`, { [PEER_TOKEN_HEADER]: "someone-else" }));
    expect(response.status).toBe(403);
  });
});
