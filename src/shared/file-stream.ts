// Bytes [start, end) of a file as a stream whose reads run on the thread pool. Bun.file()
// .stream() reads a regular file with blocking pread(2) on the event loop, 512 KiB at a
// time: a read that waits for the disk (or a descheduled thread) held up every other
// request, e.g. manifest GETs while capped blob deliveries stream (bench/, scenario 12).
import { open } from "node:fs/promises";

const READ_CHUNK = 64 * 1024;

export function fileRangeStream(path: string, start = 0, end?: number): ReadableStream<Uint8Array> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  let position = start;
  const close = async () => {
    const h = handle;
    handle = undefined;
    await h?.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        try {
          handle ??= await open(path, "r");
          const want = end === undefined ? READ_CHUNK : Math.min(READ_CHUNK, end - position);
          const buffer = new Uint8Array(Math.max(0, want));
          const { bytesRead } = want > 0 ? await handle.read(buffer, 0, want, position) : { bytesRead: 0 };
          if (bytesRead === 0) {
            await close();
            if (end !== undefined && position < end) throw new Error(`${path} ended at byte ${position}, before ${end}`);
            controller.close();
            return;
          }
          position += bytesRead;
          controller.enqueue(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
        } catch (error) {
          await close();
          controller.error(error);
        }
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}
