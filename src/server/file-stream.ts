// A cached blob file as a response body stream, for responses that can't be sendfile'd (a
// client under [limits]: the body's end releases its download slot, or its bytes are paced).
import { closeSync, openSync, readSync } from "node:fs";

/**
 * Bytes [start, end) of a cached file, read only when the consumer pulls, `readBytes` at a
 * time into one buffer: each piece is lent (ChunkUse "lent" in registry/blob-download.ts),
 * valid until the next pull, so a stream makes no garbage however many bytes it sends. For
 * an HTTP response body only, behind wrappers that read nothing ahead. (Bun.file().stream()
 * reads ahead into fresh 512 KiB blocks: under a bandwidth cap that churn let the allocator's
 * scavenger stall the event loop for 100+ ms.)
 */
export function cachedFileStream(path: string, start: number, end: number, readBytes: number): ReadableStream<Uint8Array> {
  let fd: number | undefined;
  let buffer: Uint8Array | undefined;
  let position = start;
  const close = () => {
    if (fd === undefined) return;
    closeSync(fd);
    fd = undefined;
  };
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        fd ??= openSync(path, "r");
        buffer ??= new Uint8Array(Math.max(1, Math.min(readBytes, end - start)));
        const length = Math.min(buffer.byteLength, end - position);
        const n = length > 0 ? readSync(fd, buffer, 0, length, position) : 0;
        if (n === 0) {
          close();
          if (position < end) return controller.error(new Error(`cached blob file shorter than ${end} bytes`));
          return controller.close();
        }
        position += n;
        controller.enqueue(buffer.subarray(0, n));
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}
