// A request's URL, parsed once: the admin check, the registry API and the access log
// all need the path, and parsing it four times per request showed up in the profile.
const parsed = new WeakMap<Request, URL>();

export function requestUrl(request: Request): URL {
  let url = parsed.get(request);
  if (!url) {
    url = new URL(request.url);
    parsed.set(request, url);
  }
  return url;
}
