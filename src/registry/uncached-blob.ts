// A blob streamed from its source without caching, for when the local disk can't take it
// (full, read-only): the client still gets its bytes, and still never a corrupt blob,
// because the last chunk is held back until the digest and length are verified.
import { BlobIntegrityError } from "../cache/blob-store.ts";
import { parseDigest } from "../protocol/digest.ts";
import type { BlobSource } from "./blob-sources.ts";

export async function openUncached(
  source: BlobSource,
  digest: string,
  onMismatch: (error: BlobIntegrityError) => void,
): Promise<{ size: number | undefined; body: ReadableStream<Uint8Array> }> {
  const opened = await source.open(0, new AbortController().signal);
  return { size: opened.size, body: opened.body.pipeThrough(verifying(digest, opened.size, onMismatch)) };
}

/** Passes chunks on one behind; the held one goes out only once the whole body matched `digest`. */
function verifying(digest: string, size: number | undefined, onMismatch: (error: BlobIntegrityError) => void): TransformStream<Uint8Array, Uint8Array> {
  const parsed = parseDigest(digest);
  if (!parsed) throw new Error(`invalid digest ${digest}`);
  const hasher = new Bun.CryptoHasher(parsed.algorithm);
  let held: Uint8Array | undefined;
  let length = 0;
  return new TransformStream({
    transform(chunk, controller) {
      hasher.update(chunk);
      length += chunk.byteLength;
      if (held) controller.enqueue(held);
      held = chunk;
    },
    flush(controller) {
      const actual = `${parsed.algorithm}:${hasher.digest("hex")}`;
      if (actual !== parsed.text || (size !== undefined && size !== length)) {
        onMismatch(new BlobIntegrityError(parsed.text, actual, size, length));
        controller.error(undefined); // cut without a value, as BlobDownload's readers are
        return;
      }
      if (held) controller.enqueue(held);
    },
  });
}

/** Bytes [start, end) of a stream. */
export function sliceBytes(start: number, end: number): TransformStream<Uint8Array, Uint8Array> {
  let position = 0;
  return new TransformStream({
    transform(chunk, controller) {
      const from = Math.max(start - position, 0);
      const to = Math.min(end - position, chunk.byteLength);
      position += chunk.byteLength;
      if (to > from) controller.enqueue(chunk.subarray(from, to));
    },
  });
}
