// A fault-injecting tier in front of the real upstream (test/harness/upstream.ts): what a
// secondary mirror, a relay or a CDN front looks like to ferry, with a switch for the ways
// they fail in production. It is a stand-in for the network between ferry and a registry,
// not for the registry: every answer it passes on comes from distribution itself.
//
// It forwards /v2/ requests to the upstream's front (Authorization included, so the real
// token flow runs) and follows blob redirects to the CDN itself, like a relay, so body
// faults (stall, reset) hit blob bytes too. node:http, because faults need the socket.
import http from "node:http";
import type { Socket } from "node:net";

export type TierFaultKind =
  | "none"
  | "refused" // the listener is closed: connection refused
  | "hang" // accepts, reads the request, never answers
  | "stall" // headers (and for blobs some bytes), then silence with the socket open
  | "reset" // headers with the full length, some bytes, then the socket is destroyed
  | "429" // TOOMANYREQUESTS JSON with Retry-After: 1
  | "429-bare" // TOOMANYREQUESTS JSON without Retry-After
  | "503" // UNAVAILABLE JSON
  | "html-403"; // Cloudflare's "Just a moment…" HTML page

export const TIER_FAULTS: TierFaultKind[] = ["refused", "hang", "stall", "reset", "429", "429-bare", "503", "html-403"];

export interface FaultTier {
  readonly url: string;
  readonly port: number;
  /** Requests answered or faulted since start, by fault kind ("none" = passed through). */
  readonly counts: Record<TierFaultKind, number>;
  setFault(kind: TierFaultKind): Promise<void>;
  readonly fault: TierFaultKind;
  /** Sockets held open by hang/stall faults that the client (ferry) has not closed yet. */
  heldOpen(): number;
  /** Requests received and not yet finished (answered, destroyed or closed by the client). */
  inFlight(): number;
  stop(): Promise<void>;
}

const HTML_403 =
  '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head><body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>';

function ociError(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}

const PASSED_HEADERS = ["content-type", "content-length", "docker-content-digest", "www-authenticate", "content-range", "link", "accept-ranges", "etag", "ratelimit-limit", "ratelimit-remaining"];

export async function startFaultTier(upstreamUrl: string): Promise<FaultTier> {
  let fault: TierFaultKind = "none";
  const counts = Object.fromEntries(["none", ...TIER_FAULTS].map((k) => [k, 0])) as Record<TierFaultKind, number>;
  const sockets = new Set<Socket>();
  const held = new Set<Socket>();
  let inFlight = 0;

  const server = http.createServer((req, res) => {
    inFlight++;
    let finished = false;
    const finish = () => {
      if (!finished) {
        finished = true;
        inFlight--;
      }
    };
    res.on("finish", finish);
    res.on("close", finish);
    void handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 5_000;
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => {
      sockets.delete(s);
      held.delete(s);
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const kind = fault;
    counts[kind]++;
    const isBlobGet = req.method === "GET" && /\/blobs\/sha256:/.test(req.url ?? "");
    switch (kind) {
      case "hang":
        held.add(req.socket);
        return;
      case "429":
        res.writeHead(429, { "Content-Type": "application/json", "Retry-After": "1" }).end(ociError("TOOMANYREQUESTS", "You have reached your pull rate limit (fault tier)"));
        return;
      case "429-bare":
        res.writeHead(429, { "Content-Type": "application/json" }).end(ociError("TOOMANYREQUESTS", "You have reached your pull rate limit (fault tier)"));
        return;
      case "503":
        res.writeHead(503, { "Content-Type": "application/json" }).end(ociError("UNAVAILABLE", "service unavailable (fault tier)"));
        return;
      case "html-403":
        res.writeHead(403, { "Content-Type": "text/html; charset=UTF-8", Server: "cloudflare" }).end(HTML_403);
        return;
    }
    const answer = await forward(req);
    const headers: Record<string, string> = {};
    for (const name of PASSED_HEADERS) {
      const v = answer.headers.get(name);
      if (v !== null) headers[name] = v;
    }
    // "stall" and "reset" only make sense once there are headers to send.
    if ((kind === "stall" || kind === "reset") && answer.status < 300 && req.method === "GET") {
      res.writeHead(answer.status, headers);
      const body = new Uint8Array(await answer.arrayBuffer());
      const part = isBlobGet ? body.subarray(0, Math.floor(body.byteLength / 3)) : new Uint8Array(0);
      if (part.byteLength) res.write(part);
      if (kind === "reset") {
        res.socket?.destroy();
      } else {
        held.add(req.socket);
        res.flushHeaders();
      }
      return;
    }
    res.writeHead(answer.status, headers);
    if (req.method === "HEAD" || !answer.body) {
      res.end();
      return;
    }
    for await (const chunk of answer.body) {
      if (!res.write(chunk)) await new Promise<void>((r) => res.once("drain", () => r()));
    }
    res.end();
  }

  async function forward(req: http.IncomingMessage): Promise<Response> {
    const headers: Record<string, string> = {};
    for (const name of ["accept", "authorization", "range", "user-agent"]) {
      const v = req.headers[name];
      if (typeof v === "string") headers[name] = v;
    }
    const first = await fetch(upstreamUrl + (req.url ?? "/"), { method: req.method, headers, redirect: "manual" });
    const location = first.headers.get("location");
    if (first.status >= 300 && first.status < 400 && location) {
      await first.body?.cancel();
      // Like a relay: follow the CDN redirect here, without the registry's Authorization.
      const { authorization: _, ...rest } = headers;
      return fetch(new URL(location, upstreamUrl), { method: req.method, headers: rest });
    }
    return first;
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  let listening = true;

  const listen = () => new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  // The listener goes at once; held sockets stay until ferry gives up on them (that is checked).
  const close = async () => {
    server.close();
    // Pooled keep-alive connections would still reach a closed listener: drop them too.
    for (const s of sockets) if (!held.has(s)) s.destroy();
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    counts,
    get fault() {
      return fault;
    },
    async setFault(kind) {
      if (kind === fault) return;
      if (fault === "refused" && !listening) {
        await listen();
        listening = true;
      }
      fault = kind;
      if (kind === "refused") {
        listening = false;
        await close();
      }
    },
    heldOpen: () => [...held].filter((s) => !s.destroyed).length,
    inFlight: () => inFlight,
    async stop() {
      for (const s of sockets) s.destroy();
      if (listening) await close();
    },
  };
}
