// A blob streamed uncached (registry/uncached-blob.ts) from a source whose bodies break,
// end early, go silent or lie, on a seeded plan: the client gets exactly its range's bytes,
// or a stream that fails; a stream to the blob's end never completes unverified.
// Replay a failure with FERRY_SEED=<seed printed>.
import { describe, expect, test } from "bun:test";
import { BlobIntegrityError } from "../../src/cache/blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { parseRange, type ByteRange } from "../../src/protocol/range.ts";
import { MAX_DOWNLOAD_ATTEMPTS } from "../../src/registry/blob-download.ts";
import { openUncached } from "../../src/registry/uncached-blob.ts";
import type { BlobSource } from "../../src/registry/blob-sources.ts";
import { waitFor } from "../harness/proc.ts";
import { prng, runSeed } from "../harness/seeded.ts";
import { BREAKS, PlannedSource } from "./support/planned-source.ts";

function rangeOf(header: string | undefined, size: number): ByteRange | undefined {
  const parsed = parseRange(header, size);
  return parsed.kind === "range" ? parsed.range : undefined;
}

/** The bytes that arrived, and whether the stream failed (a cut stream errors without a reason: read-cursor.ts). */
async function drain(body: ReadableStream<Uint8Array>): Promise<{ bytes: Uint8Array; failed: boolean }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const chunk of body) parts.push(new Uint8Array(chunk));
    return { bytes: Buffer.concat(parts), failed: false };
  } catch {
    return { bytes: Buffer.concat(parts), failed: true };
  }
}

describe("uncached blob streams", () => {
  test("a body that breaks after its last byte is not resumed (bytes=size- would be a 416): the stream completes", async () => {
    const blob = new Uint8Array(5000).fill(3);
    const source = new PlannedSource(blob, [{ kind: "reset", after: blob.byteLength }], prng(1), 1000);
    const opened = await openUncached(source, digestOf(blob), { range: () => undefined, onMismatch: () => {}, onResume: () => {} });
    expect(await drain(opened.body)).toEqual({ bytes: Buffer.from(blob), failed: false });
    expect(source.opens).toEqual([0]);
  });

  test("a client that leaves while a resume opens: the new body is cancelled, not read by nobody", async () => {
    const blob = new Uint8Array(3000).fill(5);
    let openResume!: (body: ReadableStream<Uint8Array>) => void;
    let resumedBodyCancelled = false;
    const opens: number[] = [];
    const source: BlobSource = {
      kind: "upstream",
      open: async (offset) => {
        opens.push(offset);
        if (offset === 0) {
          let sent = 0;
          const body = new ReadableStream<Uint8Array>({
            pull: (c) => (sent++ < 2 ? c.enqueue(blob.slice(0, 1000)) : c.error(new Error("connection reset"))),
          });
          return { size: blob.byteLength, body, stallTimeoutMs: 1000 };
        }
        const body = await new Promise<ReadableStream<Uint8Array>>((resolve) => (openResume = resolve));
        return { size: blob.byteLength, body, stallTimeoutMs: 1000 };
      },
      bodyFailed: () => true,
    };
    const opened = await openUncached(source, digestOf(blob), { range: () => undefined, onMismatch: () => {}, onResume: () => {} });
    const reader = opened.body.getReader();
    expect((await reader.read()).value?.byteLength).toBe(1000);
    const next = reader.read(); // the held chunk waits for the body, which breaks: a resume opens
    await waitFor(() => opens.length === 2, { timeoutMs: 5_000, intervalMs: 1, what: "the resume's open" });
    await reader.cancel();
    expect((await next).done).toBe(true);
    openResume(new ReadableStream({ cancel: () => void (resumedBodyCancelled = true) }));
    await waitFor(() => resumedBodyCancelled, { timeoutMs: 5_000, intervalMs: 1, what: "the resumed body cancelled" });
    expect(opens).toEqual([0, 2000]);
  });

  test("seeded: bodies that break are resumed from the byte reached; the client gets its exact range or a failed stream", async () => {
    const seed = runSeed();
    console.log(`uncached-blob seed ${seed} (replay: FERRY_SEED=${seed})`);
    const random = prng(seed);
    for (let run = 0; run < 60; run++) {
      const size = 1 + Math.floor(random() * 20_000);
      const blob = new Uint8Array(size).map(() => Math.floor(random() * 256));
      const breaks = Math.floor(random() * (MAX_DOWNLOAD_ATTEMPTS + 1)); // up to one more than the attempts
      const plan = Array.from({ length: breaks }, () => ({ kind: BREAKS[Math.floor(random() * BREAKS.length)]!, after: Math.floor(random() * size) }));
      const header = random() < 0.5 ? undefined : `bytes=${Math.floor(random() * size)}-${random() < 0.5 ? "" : Math.floor(random() * size * 1.2)}`;
      const what = `seed ${seed} run ${run}: size ${size}, range ${header ?? "none"}, plan ${JSON.stringify(plan)}`;
      const source = new PlannedSource(blob, plan, random, 100); // 100 ms of silence is a stall: well above a loaded machine's pauses
      const mismatches: BlobIntegrityError[] = [];
      const resumes: number[] = [];
      const opened = await openUncached(source, digestOf(blob), {
        range: (s) => (s === undefined ? undefined : rangeOf(header, s)),
        onMismatch: (m) => mismatches.push(m),
        onResume: (at) => resumes.push(at),
      }).catch((error: unknown) => ({ failedToOpen: error }));
      const range = rangeOf(header, size);
      const expected = range ? blob.subarray(range.start, range.end + 1) : blob;
      if ("failedToOpen" in opened) {
        // Answered with an error, never with bytes: only when the body failed before the range's first byte.
        expect(opened.failedToOpen, what).toBeInstanceOf(Error);
        continue;
      }
      const { bytes, failed } = await drain(opened.body);
      const lied = source.opens.some((offset, n) => plan[n]?.kind === "corrupt" && Math.min(plan[n]!.after, size - offset) > 0);
      if (!failed) {
        // A completed stream is exactly the range, verified when it reaches the blob's end: a
        // lying body never completes one. A range that ends before the blob does can't be
        // verified without the rest (as from any registry; the client checks the digest).
        const reachesEnd = !range || range.end === size - 1;
        if (reachesEnd || !lied) expect(Buffer.from(bytes).equals(Buffer.from(expected)), what).toBe(true);
        if (reachesEnd) expect(mismatches, what).toEqual([]);
      } else {
        // A failed stream never completes the range; what arrived before the failure is right
        // unless a body lied (bytes stream before the digest is known: only the last is held).
        expect(bytes.byteLength, what).toBeLessThan(expected.byteLength);
        if (!lied) expect(Buffer.from(bytes).equals(Buffer.from(expected.subarray(0, bytes.byteLength))), what).toBe(true);
      }
      // Resumes ask from the byte reached, which only moves forward; at most the download's attempts.
      expect(source.opens.length, what).toBeLessThanOrEqual(MAX_DOWNLOAD_ATTEMPTS);
      expect(source.opens.slice(1), what).toEqual(resumes);
      for (let i = 1; i < source.opens.length; i++) expect(source.opens[i]!, what).toBeGreaterThanOrEqual(source.opens[i - 1]!);
      // Fewer breaks than attempts and none that lies: every stream completes.
      if (breaks < MAX_DOWNLOAD_ATTEMPTS && !lied) expect(failed, what).toBe(false);
    }
  }, 60_000);
});
