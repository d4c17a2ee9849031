// A small HTTP/1.1 client on raw sockets (Bun.connect), for the benchmarks.
//
// Why not fetch(): on this machine Bun's fetch reads a loopback body at about half the
// speed of a raw socket (64 KiB chunks through a ReadableStream), so it would be the
// bottleneck of every blob measurement. This client counts body bytes as they arrive
// (nothing is buffered unless asked for), records the time of the first body byte, and
// is bounded: every request has a deadline, and buffered bodies have a size limit.
// One connection per request (Connection: close): blob pulls are one request per
// connection anyway, and it keeps the framing code small.

export interface HttpRequest {
  url: string;
  method?: "GET" | "HEAD";
  headers?: Record<string, string>;
  /** Keep the body (up to maxBodyBytes) in the result; otherwise bytes are only counted. */
  keepBody?: boolean;
  maxBodyBytes?: number;
  /** Whole request deadline (default 120 s). */
  timeoutMs?: number;
  /** A forward HTTP proxy (http://host:port): the request goes to it in absolute form. */
  proxy?: string;
}

export interface HttpResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Body bytes received. */
  bytes: number;
  body?: Uint8Array;
  /** Milliseconds from the start of the request: headers complete, first body byte, done. */
  headersMs: number;
  firstByteMs: number | undefined;
  totalMs: number;
  /** Wall-clock (epoch ms, sub-ms precision) of start and first body byte. */
  startEpochMs: number;
  firstByteEpochMs: number | undefined;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");

/** Epoch milliseconds with sub-millisecond precision (comparable across processes). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export function request(req: HttpRequest): Promise<HttpResponse> {
  const url = new URL(req.url);
  if (url.protocol !== "http:") return Promise.reject(new Error(`only http:// is supported: ${req.url}`));
  const method = req.method ?? "GET";
  const timeoutMs = req.timeoutMs ?? 120_000;
  const maxBody = req.maxBodyBytes ?? 16 * 1024 * 1024;
  const target = req.proxy ? url.toString() : `${url.pathname}${url.search}`;
  const via = req.proxy ? new URL(req.proxy) : url;
  const headerLines = [`${method} ${target} HTTP/1.1`, `Host: ${url.host}`, "Connection: close", "User-Agent: ferry-bench"];
  for (const [k, v] of Object.entries(req.headers ?? {})) headerLines.push(`${k}: ${v}`);
  const head = headerLines.join("\r\n") + "\r\n\r\n";

  return new Promise<HttpResponse>((resolve, reject) => {
    const t0 = performance.now();
    const startEpochMs = epochMs();
    let headerBuf: Buffer | undefined = Buffer.alloc(0);
    let status = 0;
    const headers: Record<string, string> = {};
    let headersMs = 0;
    let firstByteMs: number | undefined;
    let firstByteEpochMs: number | undefined;
    let bytes = 0;
    const kept: Buffer[] = [];
    let framing: "none" | "length" | "chunked" | "close" = "close";
    let remaining = 0; // length framing: body bytes still expected
    // Chunked framing state.
    let chunkLeft = 0; // data bytes left in the current chunk
    let chunkState: "size" | "data" | "data-crlf" | "trailer" = "size";
    let sizeLine = "";
    let trailerTail = "";
    let settled = false;
    let sock: { end(): void; terminate(): void } | undefined;

    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        sock?.terminate();
      } catch {}
      if (error) return reject(error);
      const totalMs = performance.now() - t0;
      resolve({
        status,
        headers,
        bytes,
        body: req.keepBody ? new Uint8Array(Buffer.concat(kept)) : undefined,
        headersMs,
        firstByteMs,
        totalMs,
        startEpochMs,
        firstByteEpochMs,
      });
    };
    const timer = setTimeout(() => finish(new Error(`timeout after ${timeoutMs} ms: ${method} ${req.url} (${bytes} body bytes)`)), timeoutMs);

    const onBody = (data: Buffer) => {
      if (data.byteLength === 0) return;
      if (firstByteMs === undefined) {
        firstByteMs = performance.now() - t0;
        firstByteEpochMs = epochMs();
      }
      bytes += data.byteLength;
      if (req.keepBody) {
        if (bytes > maxBody) return finish(new Error(`body larger than ${maxBody} bytes: ${req.url}`));
        kept.push(Buffer.from(data)); // the socket may reuse its buffer
      }
    };

    const onChunked = (data: Buffer) => {
      let i = 0;
      while (i < data.byteLength && !settled) {
        if (chunkState === "size") {
          const nl = data.indexOf(10, i);
          if (nl < 0) {
            sizeLine += data.toString("latin1", i);
            return;
          }
          sizeLine += data.toString("latin1", i, nl);
          i = nl + 1;
          const size = parseInt(sizeLine.trim().split(";")[0] ?? "", 16);
          sizeLine = "";
          if (!Number.isFinite(size)) return finish(new Error("bad chunk size"));
          if (size === 0) {
            chunkState = "trailer";
            trailerTail = "\r\n";
          } else {
            chunkLeft = size;
            chunkState = "data";
          }
        } else if (chunkState === "data") {
          const n = Math.min(chunkLeft, data.byteLength - i);
          onBody(data.subarray(i, i + n));
          chunkLeft -= n;
          i += n;
          if (chunkLeft === 0) chunkState = "data-crlf";
        } else if (chunkState === "data-crlf") {
          const nl = data.indexOf(10, i);
          if (nl < 0) return;
          i = nl + 1;
          chunkState = "size";
        } else {
          // Trailers end with an empty line.
          trailerTail = (trailerTail + data.toString("latin1", i)).slice(-4);
          i = data.byteLength;
          if (trailerTail.endsWith("\r\n\r\n")) return finish();
        }
      }
    };

    const onData = (data: Buffer) => {
      if (settled) return;
      if (headerBuf !== undefined) {
        headerBuf = headerBuf.byteLength ? Buffer.concat([headerBuf, data]) : Buffer.from(data);
        const end = headerBuf.indexOf(CRLFCRLF);
        if (end < 0) {
          if (headerBuf.byteLength > 64 * 1024) finish(new Error("response headers too large"));
          return;
        }
        const text = headerBuf.toString("latin1", 0, end);
        const rest = headerBuf.subarray(end + 4);
        headerBuf = undefined;
        const lines = text.split("\r\n");
        status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
        for (const line of lines.slice(1)) {
          const c = line.indexOf(":");
          if (c <= 0) continue;
          const k = line.slice(0, c).trim().toLowerCase();
          const v = line.slice(c + 1).trim();
          headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
        }
        headersMs = performance.now() - t0;
        if (method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200)) framing = "none";
        else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) framing = "chunked";
        else if (headers["content-length"] !== undefined) {
          framing = "length";
          remaining = Number(headers["content-length"]);
        } else framing = "close";
        if (framing === "none" || (framing === "length" && remaining === 0)) return finish();
        if (rest.byteLength === 0) return;
        data = rest;
      }
      if (framing === "length") {
        const take = data.byteLength > remaining ? data.subarray(0, remaining) : data;
        onBody(take);
        remaining -= take.byteLength;
        if (remaining <= 0) finish();
      } else if (framing === "chunked") {
        onChunked(data);
      } else {
        onBody(data);
      }
    };

    Bun.connect({
      hostname: via.hostname,
      port: Number(via.port || 80),
      socket: {
        open(s) {
          sock = s;
          s.write(head);
        },
        data(_s, data) {
          onData(data);
        },
        close() {
          if (settled) return;
          if (headerBuf === undefined && framing === "close") return finish();
          finish(new Error(`connection closed early: ${method} ${req.url} (status ${status}, ${bytes} body bytes${framing === "length" ? `, ${remaining} missing` : ""})`));
        },
        error(_s, error) {
          finish(error);
        },
        connectError(_s, error) {
          finish(error);
        },
      },
    }).catch((error: Error) => finish(error));
  });
}
