// A cached blob sent as a stream (a client under [limits]: its end releases a download slot,
// or its bytes are paced) instead of sendfile. The stream lends each piece (ChunkUse "lent"):
// one buffer per stream, read again only when the response sink asks for more.
import { afterAll, describe, expect, test } from "bun:test";
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onStreamEnd } from "../../src/access/limits.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { cachedFileStream } from "../../src/server/file-stream.ts";
import { Bandwidth } from "../../src/shared/bandwidth.ts";
import { curlDigest, serveHttpAndHttps } from "./support/http-clients.ts";

const dir = mkdtempSync(join(tmpdir(), "ferry-file-stream-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function blobFile(name: string, size: number): { path: string; bytes: Uint8Array } {
  const bytes = randomFillSync(new Uint8Array(size));
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

describe("a cached file streamed to a client under limits", () => {
  test("is read into one buffer: every piece of a whole file and of a range arrives intact, and no piece is a new buffer", async () => {
    const { path, bytes } = blobFile("one-buffer", 3 * 1024 * 1024 + 5);
    for (const [start, end] of [
      [0, bytes.byteLength],
      [70_000, 2_000_001],
    ] as const) {
      const reader = cachedFileStream(path, start, end, 64 * 1024).getReader();
      const buffers = new Set<ArrayBufferLike>();
      const received: Uint8Array[] = [];
      for (let i = 0; i < 1_000; i++) {
        const { done, value } = await reader.read();
        if (done) break;
        buffers.add(value.buffer);
        received.push(value.slice()); // lent: copied before the next read, as the HTTP sink does
      }
      expect(Buffer.concat(received).equals(Buffer.from(bytes.subarray(start, end)))).toBe(true);
      expect(received.length).toBeGreaterThan(16);
      expect(buffers.size).toBe(1);
    }
  });

  test("a file shorter than its range is an error, not a short answer", async () => {
    const { path } = blobFile("short", 1000);
    const reader = cachedFileStream(path, 0, 5000, 64 * 1024).getReader();
    expect((await reader.read()).value?.byteLength).toBe(1000);
    await expect(reader.read()).rejects.toThrow("shorter than 5000 bytes");
  });

  test("through Bun's HTTP server, paced, slot-tracked, slow and over TLS, every client gets the file intact", async () => {
    // Lending is safe only if the response sink copies a piece before it pulls the next one,
    // also under backpressure: real clients (curl), one of them slower than the server.
    const { path, bytes } = blobFile("http", 6 * 1024 * 1024 + 321);
    const paced = new Bandwidth(16 * 1024 * 1024);
    let ended = 0;
    using server = serveHttpAndHttps(dir, (req) => {
      const stream = onStreamEnd(cachedFileStream(path, 0, bytes.byteLength, 1024 * 1024), () => ended++);
      return new Response(new URL(req.url).pathname === "/paced" ? paced.shape(stream) : stream);
    });
    const clients = [
      curlDigest(`${server.httpUrl}/`),
      curlDigest(`${server.httpUrl}/`, "--limit-rate", "8M"),
      curlDigest(`${server.httpUrl}/paced`),
      curlDigest(`${server.httpsUrl}/`),
      curlDigest(`${server.httpsUrl}/paced`, "--limit-rate", "12M"),
    ];
    const results = await Promise.all(clients);
    expect(results).toEqual(clients.map(() => ({ exit: 0, digest: digestOf(bytes) })));
    expect(ended).toBe(results.length);
  }, 30_000);
});
