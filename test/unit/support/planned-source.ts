// A BlobSource on a seeded plan for the randomized download tests: it serves a blob from
// any offset in random chunks, and its n-th body breaks as plan[n] says.
import type { BlobSource, OpenedBody } from "../../../src/registry/blob-sources.ts";
import { UpstreamError } from "../../../src/upstream/errors.ts";

export const BREAKS = ["reset", "early-end", "silence", "refused", "corrupt"] as const;
export type Break = (typeof BREAKS)[number];

/** Serves `blob` from any offset in random chunks; the n-th body follows plan[n] (undefined: whole and right). */
export class PlannedSource implements BlobSource {
  readonly kind = "upstream" as const;
  readonly opens: number[] = [];
  bodyFailures = 0;

  constructor(
    private readonly blob: Uint8Array,
    private readonly plan: { kind: Break; after: number }[],
    private readonly random: () => number,
    private readonly stallTimeoutMs: number,
    private readonly maxChunk = 3000,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    const step = this.plan[this.opens.length];
    this.opens.push(offset);
    // As a registry answers bytes=size- (nothing is left to send).
    if (offset >= this.blob.byteLength) throw new UpstreamError("https://registry.example", { kind: "status", status: 416, message: "range not satisfiable" });
    if (step?.kind === "refused") throw new UpstreamError("https://registry.example", { kind: "status", status: 503, message: "unavailable" });
    const blob = this.blob;
    const random = this.random;
    const maxChunk = this.maxChunk;
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
        const n = Math.min(stopAt - at, 1 + Math.floor(random() * maxChunk));
        const chunk = blob.slice(at, at + n);
        if (step?.kind === "corrupt") chunk[0] = chunk[0]! ^ 0xff;
        at += n;
        controller.enqueue(chunk);
      },
    });
    return { size: blob.byteLength, body, stallTimeoutMs: this.stallTimeoutMs };
  }

  bodyFailed(): boolean {
    this.bodyFailures++;
    return true;
  }
}
