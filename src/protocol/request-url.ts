// A request's URL, parsed once: the admin check, the registry API and the access log
// all need the path (one parse per request, not four).
const parsed = new WeakMap<Request, URL>();

/** Never throws: a Host header no URL can hold ("a:b:c") keeps the path under a placeholder host. */
export function requestUrl(request: Request): URL {
  let url = parsed.get(request);
  if (!url) {
    url = parseRequestUrl(request.url);
    parsed.set(request, url);
  }
  return url;
}

const PLACEHOLDER = "http://invalid-host.invalid";

/**
 * A Host header ferry can't route: one no URL can hold, or one so short (under 4
 * characters on plain HTTP) that the path starts before index 11, where Elysia's router
 * looks for it ("https://" plus three).
 */
export function unroutableHost(request: Request): boolean {
  const raw = request.url;
  const path = raw.indexOf("/", raw.indexOf("//") + 2);
  return path < 11 || requestUrl(request).hostname === "invalid-host.invalid";
}

function parseRequestUrl(raw: string): URL {
  try {
    return new URL(raw);
  } catch {
    const scheme = raw.indexOf("//");
    const path = scheme < 0 ? -1 : raw.indexOf("/", scheme + 2);
    try {
      // Concatenated, not resolved against a base: a path like "//evil/x" must stay a path.
      return new URL(PLACEHOLDER + (path < 0 ? "/" : raw.slice(path)));
    } catch {
      return new URL(`${PLACEHOLDER}/`);
    }
  }
}
