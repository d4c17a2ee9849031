// Which headers cross the relay. Requests use allow-lists (never the client's hop-by-hop,
// cookie, forwarding or Cloudflare headers, nor the relay secret); responses carry back only
// what registry clients read.

/** Sent to the registry itself. Authorization is the client's token for that registry. */
const TO_REGISTRY = ["accept", "authorization", "range", "if-range", "if-none-match", "user-agent"];
/** Sent to other hosts (blob CDNs): S3-style storage rejects some headers, and tokens must not leak. */
const TO_OTHER_HOSTS = ["range", "if-range", "user-agent"];

const FROM_UPSTREAM = [
  "content-type",
  "content-length",
  "content-range",
  "accept-ranges",
  "docker-content-digest",
  "etag",
  "last-modified",
  "retry-after",
  "www-authenticate",
  "link",
  "docker-ratelimit-source", // which egress IP Docker Hub counted: helps explain a relay's 429
];

function pick(from: Headers, names: string[]): Headers {
  const out = new Headers();
  for (const name of names) {
    const value = from.get(name);
    if (value !== null) out.set(name, value);
  }
  return out;
}

export function registryRequestHeaders(request: Request): Headers {
  const h = pick(request.headers, TO_REGISTRY);
  if (!h.has("user-agent")) h.set("user-agent", "ferry-relay");
  // Blobs are already compressed and Content-Length must match what we stream back.
  h.set("accept-encoding", "identity");
  return h;
}

export function crossOriginHeaders(registryHeaders: Headers): Headers {
  const h = pick(registryHeaders, TO_OTHER_HOSTS);
  h.set("accept-encoding", "identity");
  return h;
}

export function responseHeaders(upstream: Response): Headers {
  const h = pick(upstream.headers, FROM_UPSTREAM);
  upstream.headers.forEach((value, name) => {
    if (name.toLowerCase().startsWith("ratelimit-")) h.set(name, value);
  });
  // A runtime that decoded a compressed body leaves the encoded length behind: drop it.
  if (upstream.headers.has("content-encoding")) h.delete("content-length");
  return h;
}

/**
 * Rewrites pagination links (`</v2/library/nginx/tags/list?last=x&n=50>; rel="next"`) so they
 * lead back through the relay the way the client came: `clientApiBase` ("/v2/ghcr.io/",
 * "/ghcr.io/v2/") and ?ns=. Links to anywhere else are left as they are.
 */
export function rewriteLink(value: string, upstream: URL, clientApiBase: string, ns: string | undefined): string {
  const basePath = upstream.pathname.replace(/\/+$/, "") + "/v2/";
  return value.replace(/<([^>]*)>/g, (whole, target: string) => {
    let url: URL;
    try {
      url = new URL(target, upstream);
    } catch {
      return whole;
    }
    if (url.origin !== upstream.origin || !url.pathname.startsWith(basePath)) return whole;
    const rest = url.pathname.slice(basePath.length);
    if (ns) url.searchParams.set("ns", ns);
    return `<${clientApiBase}${rest}${url.search}>`;
  });
}
