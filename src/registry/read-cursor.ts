// A client's way through a blob being fetched: the next bytes on demand, as a pull stream
// that asks for nothing ahead (the source paces the client, never the other way round).

export interface ReadCursor {
  /** The next bytes of the range; null at its end. */
  next(): Promise<Uint8Array | null>;
  release(): void;
}

/** A cursor as a pull stream; `first` (when not undefined) is what it already read. */
export function cursorStream(cursor: ReadCursor, first: Uint8Array | null | undefined): ReadableStream<Uint8Array> {
  let pending = first;
  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        try {
          const chunk = pending === undefined ? await cursor.next() : pending;
          pending = undefined;
          if (chunk === null) controller.close();
          else controller.enqueue(chunk);
        } catch {
          cursor.release();
          // The client's connection is cut without a value: Bun prints an errored body's
          // reason as a raw stack trace, and the source has logged why.
          controller.error(undefined);
        }
      },
      cancel: () => cursor.release(),
    },
    { highWaterMark: 0 },
  );
}

/**
 * The cursor's stream once its first bytes are there (or its range turned out empty);
 * rejects with the cursor's error if it fails before. A response's headers go out with its
 * first byte, so this is where a fetch that fails first must become an error answer: its
 * stream erroring later only resets the connection (and clients send it again).
 */
export async function cursorStreamWithFirstBytes(cursor: ReadCursor): Promise<ReadableStream<Uint8Array>> {
  try {
    return cursorStream(cursor, await cursor.next());
  } catch (error) {
    cursor.release();
    throw error;
  }
}
