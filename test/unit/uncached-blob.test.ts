// A blob streamed uncached (registry/uncached-blob.ts) from a source whose bodies break,
// end early, go silent or lie, on a seeded plan: the client gets exactly its range's bytes,
// or a stream that fails; a stream to the blob's end never completes unverified.
// Replay a failure with FERRY_SEED=<seed printed>.
import { describe, expect, test } from "bun:test";
import { BlobIntegrityError } from "../../src/cache/blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { parseRange, type ByteRange } from "../../src/protocol/range.ts";
import { MAX_DOWNLOAD_ATTEMPTS } from "../../src/registry/blob-download.ts";
import type { BlobSource, OpenedBody } from "../../src/registry/blob-sources.ts";
import { openUncached } from "../../src/registry/uncached-blob.ts";
import { UpstreamError } from "../../src/upstream/errors.ts";
import { prng, runSeed } from "../harness/seeded.ts";

type Break = "reset" | "early-end" | "silence" | "refused" | "corrupt";

/** Serves `blob` from any offset in random chunks; the n-th body follows plan[n] (undefined: whole and right). */
class PlannedSource implements BlobSource {
  readonly kind = "upstream" as const;
  readonly opens: number[] = [];
  bodyFailures = 0;

  constructor(
    private readonly blob: Uint8Array,
    private readonly plan: { kind: Break; after: number }[],
    private readonly random: () => number,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    const step = this.plan[this.opens.length];
    this.opens.push(offset);
    if (step?.kind === "refused") throw new UpstreamError("https://registry.example", { kind: "status", status: 503, message: "unavailable" });
    const blob = this.blob;
    const random = this.random;
    let at = offset;
    const stopAt = step ? Math.min(blob.byteLength, offset + step.after) : blob.byteLength;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        signal.addEventListener("abort", () => controller.error(new DOMException("The operation was aborted.", "AbortError")), { once: true });
      },
      pull(controller) {
        if (signal.aborted) return;
        if (at >= stopAt) {
          if (step?.kind === "reset") controller.error(new Error("connection reset"));
          else if (step?.kind === "silence") return new Promise<void>(() => {}); // until the stall timer aborts
          else controller.close(); // the end, early or not
          return;
        }
        const n = Math.min(stopAt - at, 1 + Math.floor(random() * 3000));
        const chunk = blob.slice(at, at + n);
        if (step?.kind === "corrupt") chunk[0] = chunk[0]! ^ 0xff;
        at += n;
        controller.enqueue(chunk);
      },
    });
    return { size: blob.byteLength, body, stallTimeoutMs: 20 };
  }

  bodyFailed(): boolean {
    this.bodyFailures++;
    return true;
  }
}

function rangeOf(header: string | undefined, size: number): ByteRange | undefined {
  const parsed = parseRange(header, size);
  return parsed.kind === "range" ? parsed.range : undefined;
}

/** The bytes that arrived, and whether the stream failed (a cut stream errors without a reason: read-cursor.ts). */
async function drain(body: ReadableStream<Uint8Array>): Promise<{ bytes: Uint8Array; failed: boolean }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const chunk of body) parts.push(chunk.slice());
    return { bytes: Buffer.concat(parts), failed: false };
  } catch {
    return { bytes: Buffer.concat(parts), failed: true };
  }
}

describe("uncached blob streams", () => {
  test("seeded: bodies that break are resumed from the byte reached; the client gets its exact range or a failed stream", async () => {
    const seed = runSeed();
    console.log(`uncached-blob seed ${seed} (replay: FERRY_SEED=${seed})`);
    const random = prng(seed);
    const kinds: Break[] = ["reset", "early-end", "silence", "refused", "corrupt"];
    for (let run = 0; run < 60; run++) {
      const size = 1 + Math.floor(random() * 20_000);
      const blob = new Uint8Array(size).map(() => Math.floor(random() * 256));
      const breaks = Math.floor(random() * (MAX_DOWNLOAD_ATTEMPTS + 1)); // up to one more than the attempts
      const plan = Array.from({ length: breaks }, () => ({ kind: kinds[Math.floor(random() * kinds.length)]!, after: Math.floor(random() * size) }));
      const header = random() < 0.5 ? undefined : `bytes=${Math.floor(random() * size)}-${random() < 0.5 ? "" : Math.floor(random() * size * 1.2)}`;
      const what = `seed ${seed} run ${run}: size ${size}, range ${header ?? "none"}, plan ${JSON.stringify(plan)}`;
      const source = new PlannedSource(blob, plan, random);
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
      const lied = plan.slice(0, source.opens.length).some((p) => p.kind === "corrupt" && p.after > 0);
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
