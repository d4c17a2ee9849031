// A fault injector in front of the real registry (the harness upstream): an in-process
// HTTP server that forwards every request to `target` unchanged, or answers the way the
// networks in front of registries do: Cloudflare's HTML 403 "Just a moment…" page, an
// HTML 429, a 429 without Retry-After, headers and then a body that never ends, or no
// answer at all. Not a stand-in for a registry: what it passes through is distribution's.
import type { Server } from "bun";

export type FrontMode = "pass" | "html-403" | "html-429" | "429-no-retry-after" | "stall-body" | "hang";

export interface FaultFront {
  readonly url: string;
  mode: FrontMode;
  /** Requests seen (method, path, status; 0 while unanswered). */
  readonly log: { method: string; path: string; status: number; userAgent: string | null }[];
  stop(): Promise<void>;
}

const CLOUDFLARE_PAGE = "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head><body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>";

export async function startFaultFront(target: string, mode: FrontMode = "pass"): Promise<FaultFront> {
  const held: (() => void)[] = [];
  const log: FaultFront["log"] = [];
  const front: { mode: FrontMode } = { mode };
  const answer = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    switch (front.mode) {
      case "html-403":
      case "html-429":
        return new Response(CLOUDFLARE_PAGE, { status: front.mode === "html-403" ? 403 : 429, headers: { "Content-Type": "text/html; charset=UTF-8", "cf-mitigated": "challenge" } });
      case "429-no-retry-after":
        return Response.json({ errors: [{ code: "TOOMANYREQUESTS", message: "You have reached your pull rate limit." }] }, { status: 429 });
      case "stall-body": {
        // Headers and one byte now; the rest never (until the front stops).
        const body = new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(new TextEncoder().encode("{")), held.push(() => c.close())) });
        return new Response(body, { headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      }
      case "hang":
        return new Promise<Response>((resolve) => held.push(() => resolve(new Response(null, { status: 503 }))));
      case "pass": {
        const headers = new Headers(req.headers);
        headers.delete("host");
        return fetch(target + url.pathname + url.search, { method: req.method, headers, redirect: "manual", decompress: false });
      }
    }
  };
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0, // a hang must really hang
    async fetch(req) {
      const entry = { method: req.method, path: new URL(req.url).pathname, status: 0, userAgent: req.headers.get("user-agent") };
      log.push(entry);
      const response = await answer(req);
      entry.status = response.status;
      return response;
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    get mode() {
      return front.mode;
    },
    set mode(m: FrontMode) {
      front.mode = m;
    },
    log,
    async stop() {
      for (const release of held.splice(0)) {
        try {
          release();
        } catch {
          // the client already went away (its stalled body was cancelled)
        }
      }
      await server.stop(true);
    },
  };
}
