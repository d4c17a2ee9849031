// The blob route's concurrent-download slot, on every kind of answer. The registry layer
// is an in-process stand-in (the logic under test is the route's, not the mirror's): the
// e2e twin in security-limits.test.ts covers 404 and 416 against the real upstream; the
// 307 of S3 redirect mode needs S3, so it is checked here.
import { describe, expect, test } from "bun:test";
import { AccessControl } from "../../src/access/access.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { Metrics } from "../../src/observe/metrics.ts";
import { TrafficStats } from "../../src/observe/traffic.ts";
import { RegistryError } from "../../src/protocol/errors.ts";
import type { Mirror } from "../../src/registry/mirror.ts";
import type { BlobResult } from "../../src/registry/results.ts";
import { registryApi } from "../../src/server/registry-api.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

function app(get: () => Promise<BlobResult>) {
  const config = parseConfig("[limits]\nconcurrent_downloads = 1");
  const mirror = {
    registries: config.registries,
    blobs: { get },
    metrics: new Metrics({ inFlightDownloads: () => 0, cacheBytes: () => 0, cacheBlobs: () => 0 }),
    traffic: new TrafficStats(),
    log: createLogger("silent"),
  } as unknown as Mirror;
  const noUpstream = {
    upstreamAccepts: async (): Promise<boolean> => {
      throw new Error("no upstream in this test");
    },
  };
  const access = new AccessControl(config, noUpstream, undefined);
  return registryApi(mirror, access);
}

const blobGet = (a: ReturnType<typeof app>) => a.handle(new Request(`http://mirror.test/v2/library/x/blobs/${DIGEST}`));

describe("concurrent_downloads slot on the blob route", () => {
  test("a 307 to the shared store gives the slot back", async () => {
    const a = app(async () => ({ digest: DIGEST, source: "shared", size: 10, body: { kind: "redirect", url: "https://s3.example.com/blob?sig=1" }, cache: "hit" }));
    for (let i = 0; i < 3; i++) {
      const r = await blobGet(a);
      expect(r.status).toBe(307);
      expect(r.headers.get("location")).toBe("https://s3.example.com/blob?sig=1");
    }
  });

  test("an error (503) gives the slot back; a body that is still being sent holds it", async () => {
    let fail = true;
    const a = app(async () => {
      if (fail) throw new RegistryError("UNAVAILABLE", "upstream unreachable", { status: 503 });
      return { digest: DIGEST, source: "upstream", size: 3, body: { kind: "stream", stream: new ReadableStream({ pull: () => new Promise(() => {}) }) }, cache: "miss" };
    });
    for (let i = 0; i < 3; i++) expect((await blobGet(a)).status).toBe(503);
    fail = false;
    const holding = await blobGet(a);
    expect(holding.status).toBe(200);
    const over = await blobGet(a);
    expect(over.status).toBe(429); // the slot is the unfinished body's
    await holding.body!.cancel();
    expect((await blobGet(a)).status).toBe(200);
  });
});
