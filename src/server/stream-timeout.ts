// Bun's idleTimeout (1.4) closes a connection whose response is a JS stream after about
// twice the timeout even while bytes flow (only silence should close it), so a layer
// that takes longer to stream than that was cut off mid-body. A streamed response is
// marked; the server then exempts its request from Bun's timer and bounds silence
// itself: no chunk for the idle timeout (a stalled source or a client that stopped
// reading) ends the stream. Files (sendfile) are not streams and keep Bun's timer.
import type { Server } from "bun";

/** Header on a streamed response, taken off before it is sent. */
const STREAMED = "x-ferry-streamed";

export function markStreamed(headers: Record<string, string>): Record<string, string> {
  return { ...headers, [STREAMED]: "1" };
}

export function exemptStreamFromIdleTimeout(response: Response, request: Request, server: Server<undefined>, idleMs: number): Response {
  if (!response.headers.has(STREAMED) || !response.body) return response;
  response.headers.delete(STREAMED);
  server.timeout(request, 0);
  return new Response(closeWhenSilent(response.body, idleMs), { status: response.status, statusText: response.statusText, headers: response.headers });
}

function closeWhenSilent(body: ReadableStream<Uint8Array>, idleMs: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let timer: Timer | undefined;
  let arm = () => {};
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        timer = setTimeout(() => {
          reader.cancel().catch(() => {});
          controller.error(new Error(`no bytes for ${idleMs} ms`));
        }, idleMs);
        // One timer per response, restarted per chunk: no timer object per chunk and client.
        arm = () => void timer?.refresh();
      },
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            clearTimeout(timer);
            controller.close();
            return;
          }
          controller.enqueue(value);
          arm();
        } catch (error) {
          clearTimeout(timer);
          controller.error(error);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
