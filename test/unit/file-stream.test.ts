// fileRangeStream: the bytes of a cached file (whole or a range) for deliveries that go
// through a JS stream (capped clients), read on the thread pool instead of the event loop.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileRangeStream } from "../../src/shared/file-stream.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function file(bytes: Uint8Array): string {
  const d = mkdtempSync(join(tmpdir(), "ferry-file-stream-"));
  dirs.push(d);
  const p = join(d, "blob");
  writeFileSync(p, bytes);
  return p;
}

const content = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 31) % 251);

test("the whole file, in chunks of at most 64 KiB", async () => {
  const sizes: number[] = [];
  const chunks: Uint8Array[] = [];
  for await (const c of fileRangeStream(file(content))) {
    sizes.push(c.byteLength);
    chunks.push(c);
  }
  expect(Buffer.concat(chunks).equals(Buffer.from(content))).toBe(true);
  expect(Math.max(...sizes)).toBe(64 * 1024);
});

test("a range [start, end) gives exactly those bytes", async () => {
  const got = new Uint8Array(await new Response(fileRangeStream(file(content), 70_000, 140_001)).arrayBuffer());
  expect(Buffer.from(got).equals(Buffer.from(content.subarray(70_000, 140_001)))).toBe(true);
});

test("a file shorter than the range fails the stream instead of ending it early", async () => {
  await expect(new Response(fileRangeStream(file(content), 0, 300_000)).arrayBuffer()).rejects.toThrow("before 300000");
});

test("a missing file fails the stream", async () => {
  await expect(new Response(fileRangeStream("/nonexistent/ferry-blob")).arrayBuffer()).rejects.toThrow();
});
