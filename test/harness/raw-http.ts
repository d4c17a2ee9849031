// One raw HTTP/1.1 request over a socket, so nothing normalises the path or the headers
// first (fetch would): what hostile clients send, byte for byte.

/** Returns the status (0 when the server closed without answering) and the whole answer. */
export async function rawRequest(port: number, head: string, timeoutMs = 5_000): Promise<{ status: number; text: string }> {
  return new Promise((resolveRaw) => {
    let data = "";
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolveRaw({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0), text: data });
    };
    const timer = setTimeout(() => {
      sock?.end();
      done();
    }, timeoutMs);
    let sock: { end(): void } | undefined;
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          sock = s;
          s.write(head);
        },
        data(_s, chunk) {
          data += chunk.toString("latin1");
          if (data.length > 1_000_000) _s.end();
        },
        close: done,
        error: done,
        connectError: done,
      },
    }).catch(done);
  });
}
