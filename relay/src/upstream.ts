// Fetching from upstreams: redirects followed by hand so each hop can be vetted (scheme,
// private addresses, and Authorization only ever to the host it was issued for), and a
// deadline on response headers only, so multi-gigabyte blobs can stream as long as they need.
import { isNonPublicHost } from "../../src/protocol/ip.ts";
import { crossOriginHeaders } from "./headers.ts";
import { RelayError } from "./errors.ts";

const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface UpstreamFetch {
  url: URL;
  method: "GET" | "HEAD";
  /** Headers for requests to `authOrigin`; other hosts get a reduced set without Authorization. */
  headers: Headers;
  /** The only origin that may see the client's Authorization header. */
  authOrigin: string;
  /** The configured upstream's origin: trusted even when it is a private address. */
  configuredOrigin: string;
  allowPrivate: boolean;
  timeoutMs: number;
  /** The client's request signal: a client that goes away stops the upstream fetch. */
  signal?: AbortSignal;
}

export interface UpstreamResult {
  response: Response;
  /** The URL that finally answered. */
  url: URL;
  /** How many redirects were followed to get there. */
  hops: number;
}

/** Throws unless the relay may fetch `url` on an upstream's say-so. */
export function vetTarget(url: URL, configuredOrigin: string, allowPrivate: boolean): void {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RelayError(502, "UNKNOWN", `upstream pointed the relay at a ${url.protocol} URL, refused`);
  }
  if (url.origin === configuredOrigin || allowPrivate) return;
  if (isNonPublicHost(url.hostname)) {
    throw new RelayError(502, "UNKNOWN", `upstream pointed the relay at private address ${url.hostname}, refused`);
  }
}

export async function fetchUpstream(req: UpstreamFetch): Promise<UpstreamResult> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  const onClientAbort = () => controller.abort();
  req.signal?.addEventListener("abort", onClientAbort, { once: true });

  let url = req.url;
  let method = req.method;
  try {
    for (let hops = 0; ; hops++) {
      vetTarget(url, req.configuredOrigin, req.allowPrivate);
      const headers = url.origin === req.authOrigin ? req.headers : crossOriginHeaders(req.headers);
      const response = await fetch(url, { method, headers, redirect: "manual", signal: controller.signal });
      const location = response.headers.get("location");
      if (!REDIRECT_STATUSES.has(response.status) || location === null) return { response, url, hops };

      await response.body?.cancel();
      if (hops >= MAX_REDIRECTS) throw new RelayError(502, "UNKNOWN", `more than ${MAX_REDIRECTS} redirects from ${req.url.host}`);
      try {
        url = new URL(location, url);
      } catch {
        throw new RelayError(502, "UNKNOWN", `upstream ${url.host} sent an invalid redirect`);
      }
      if (response.status === 303 && method !== "HEAD") method = "GET";
    }
  } catch (error) {
    if (error instanceof RelayError) throw error;
    if (timedOut) throw new RelayError(504, "UNAVAILABLE", `${url.host} did not answer within ${req.timeoutMs} ms`);
    throw new RelayError(502, "UNAVAILABLE", `${url.host} unreachable: ${(error as Error).message}`);
  } finally {
    // From here on the body streams: only the client going away (which cancels the stream) ends it.
    clearTimeout(timer);
    req.signal?.removeEventListener("abort", onClientAbort);
  }
}
