// A blob streamed from its source without caching, for when the local disk can't take it
// (full, read-only): the client still gets its bytes, and still never a corrupt blob,
// because the last chunk is held back until the digest and length are verified. It is a
// download like the cached ones in what bounds it: a max_downloads place while it runs,
// the source's stall timeout (silence is the source's failure, recorded against its tier),
// resumes from the byte reached when the body breaks, and an error answer, not a reset
// connection, when it fails before its first byte.
import { BlobIntegrityError } from "../cache/blob-store.ts";
import { parseDigest } from "../protocol/digest.ts";
import type { ByteRange } from "../protocol/range.ts";
import { UpstreamError } from "../upstream/errors.ts";
import { bodyBroke, worthResuming, type DownloadSlots, type RefusedBody } from "./blob-download.ts";
import type { BlobSource, OpenedBody } from "./blob-sources.ts";
import { cursorStreamWithFirstBytes, type ReadCursor } from "./read-cursor.ts";

export interface UncachedOptions {
  /** Where the client's range falls once the size is known (throws for one that can't be served). */
  range: (size: number | undefined) => ByteRange | undefined;
  slots?: DownloadSlots;
  onMismatch: (error: BlobIntegrityError) => void;
  /** The body broke at byte `at` and is asked for again (attempt 2 and on). */
  onResume: (at: number, attempt: number, error: UpstreamError) => void;
  /** The source's answer already in hand (the cached attempt's, refused by the disk): not asked again. */
  refused?: RefusedBody;
}

type BodyReader = ReturnType<typeof readerOf>;
const readerOf = (body: ReadableStream<Uint8Array>) => body.getReader();

export async function openUncached(source: BlobSource, digest: string, opts: UncachedOptions): Promise<{ size: number | undefined; range: ByteRange | undefined; body: ReadableStream<Uint8Array> }> {
  const parsed = parseDigest(digest);
  if (!parsed) throw new Error(`invalid digest ${digest}`);
  const releaseSlot = (await opts.slots?.acquire()) ?? (() => {});
  let abort = opts.refused?.abort ?? new AbortController();
  let reader: BodyReader;
  let size: number | undefined;
  let range: ByteRange | undefined;
  let stallTimeoutMs: number;
  try {
    const opened = opts.refused?.opened ?? (await source.open(0, abort.signal));
    reader = readerOf(opened.body);
    size = opened.size;
    stallTimeoutMs = opened.stallTimeoutMs;
    try {
      range = opts.range(size);
    } catch (error) {
      reader.cancel().catch(() => {});
      throw error;
    }
  } catch (error) {
    releaseSlot();
    throw error;
  }
  const hasher = new Bun.CryptoHasher(parsed.algorithm);
  const [start, end] = range ? [range.start, range.end + 1] : [0, Infinity];
  let received = 0; // bytes of the body read so far
  let held: Uint8Array | undefined; // the chunk kept back, starting at received - held.byteLength
  let finished = false;
  let verified = false; // the body ended and matched; only the held chunk is left
  let attempt = 1;
  let stallTimer: Timer | undefined;
  const release = () => {
    clearTimeout(stallTimer);
    if (finished) return;
    finished = true;
    releaseSlot();
    reader.cancel().catch(() => {});
  };
  /** The body broke: asks the source again from the byte reached, as a cached download would (blob-download.ts). */
  const resumeAfter = async (failure: UpstreamError): Promise<void> => {
    for (;;) {
      if (finished) throw failure; // the client left
      if (!worthResuming(failure, source, size, attempt)) throw failure;
      attempt++;
      opts.onResume(received, attempt, failure);
      abort = new AbortController();
      let opened: OpenedBody;
      try {
        opened = await source.open(received, abort.signal);
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        failure = error;
        continue;
      }
      if (finished) {
        // The client left while it opened: the new body is nobody's.
        opened.body.cancel().catch(() => {});
        throw failure;
      }
      reader = readerOf(opened.body);
      stallTimeoutMs = opened.stallTimeoutMs;
      return;
    }
  };
  /** The next whole chunk in the order received, one behind the body; null at its verified end. */
  const nextVerified = async (): Promise<Uint8Array | null> => {
    for (;;) {
      if (verified) {
        const last = held ?? null;
        held = undefined;
        return last;
      }
      clearTimeout(stallTimer);
      const attemptAbort = abort;
      stallTimer = setTimeout(() => attemptAbort.abort(), stallTimeoutMs);
      let read: Awaited<ReturnType<typeof reader.read>>;
      try {
        read = await reader.read();
      } catch (error) {
        const failure = bodyBroke(source, attemptAbort.signal, error);
        // Broken after its last byte: nothing to resume (bytes=size- is a 416); verify what is in.
        if (size !== undefined && received >= size) read = { done: true, value: undefined };
        else {
          await resumeAfter(failure);
          continue;
        }
      } finally {
        clearTimeout(stallTimer);
      }
      if (read.done) {
        if (size !== undefined && received < size) {
          await resumeAfter(new UpstreamError(source.kind, { kind: "network", message: `body ended early at ${received} of ${size} bytes` }));
          continue;
        }
        const actual = `${parsed.algorithm}:${hasher.digest("hex")}`;
        if (actual !== parsed.text || (size !== undefined && size !== received)) {
          const mismatch = new BlobIntegrityError(parsed.text, actual, size, received);
          opts.onMismatch(mismatch);
          throw mismatch;
        }
        verified = true;
        continue;
      }
      hasher.update(read.value);
      received += read.value.byteLength;
      const previous = held;
      held = read.value;
      if (previous) return previous;
    }
  };
  let position = 0; // of the next verified chunk's first byte
  const cursor: ReadCursor = {
    next: async () => {
      for (;;) {
        const chunk = position < end ? await nextVerified() : null;
        if (chunk === null) {
          release(); // the range's end, which may come before the body's
          return null;
        }
        const at = position;
        position += chunk.byteLength;
        const from = Math.max(start - at, 0);
        const to = Math.min(end - at, chunk.byteLength);
        if (to > from) return chunk.subarray(from, to);
      }
    },
    release,
  };
  return { size, range, body: await cursorStreamWithFirstBytes(cursor) };
}
