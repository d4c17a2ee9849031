// `ferry relay`: the Workers handler served by Bun, for a VPS whose egress IP Docker Hub has
// not throttled (it throttles Cloudflare Workers egress since late 2025).
import { createRelayHandler } from "./handler.ts";
import type { RelayConfig } from "./config.ts";

export { parseRelayConfig, RelayConfigError, type RelayConfig } from "./config.ts";

export interface RelayServer {
  /** http://host:port the relay listens on (the actual port when 0 was asked for). */
  url: string;
  stop(): void;
}

/** One line per request for the caller's logger; the path only (no query, no headers). */
export interface RelayRequestLog {
  method: string;
  path: string;
  status: number;
  ms: number;
}

export function serveRelay(opts: {
  hostname: string;
  port: number;
  config: RelayConfig;
  onRequest?: (entry: RelayRequestLog) => void;
}): RelayServer {
  const handler = createRelayHandler(opts.config);
  const onRequest = opts.onRequest;
  const server = Bun.serve({
    hostname: opts.hostname,
    port: opts.port,
    // Bun's maximum: a slow client reading a multi-gigabyte layer must not be cut off.
    idleTimeout: 255,
    fetch: onRequest
      ? async (request) => {
          const start = performance.now();
          const response = await handler(request);
          onRequest({ method: request.method, path: new URL(request.url).pathname, status: response.status, ms: Math.round(performance.now() - start) });
          return response;
        }
      : handler,
  });
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname;
  return { url: `http://${host}:${server.port}`, stop: () => void server.stop(true) };
}
