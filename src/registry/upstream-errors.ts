// Upstream answers that end a pull, turned into the OCI error the client should see.
// A 429 stays a 429 (with Retry-After), an unreachable upstream is a 503, an HTML page
// in front of the registry (or bytes that are not the blob asked for) is a 502, and only a
// real upstream 404 becomes *_UNKNOWN.
import { BlobIntegrityError } from "../cache/blob-store.ts";
import { isErrorCode, RegistryError, type ErrorCode } from "../protocol/errors.ts";
import { TokenFetchError } from "../upstream/auth.ts";
import { InvalidAnswer, UpstreamError } from "../upstream/errors.ts";

export function toRegistryError(error: unknown, notFound: ErrorCode, what: string): RegistryError {
  if (error instanceof RegistryError) return error;
  if (error instanceof InvalidAnswer) return new RegistryError("MANIFEST_INVALID", error.message, { status: 502 });
  // What the source (upstream or shared store) sent is not the blob: its fault, not ours.
  if (error instanceof BlobIntegrityError) return new RegistryError("UNAVAILABLE", `the bytes fetched for ${what} are not that blob (nothing was kept): ${error.message}`, { status: 502 });
  if (error instanceof TokenFetchError) {
    return new RegistryError("UNAUTHORIZED", `upstream refused ferry's credentials for ${what}: ${error.message}`, { status: error.status === 401 ? 401 : 502 });
  }
  if (!(error instanceof UpstreamError)) return new RegistryError("UNKNOWN", `internal error: ${(error as Error)?.message ?? String(error)}`);
  const f = error.failure;
  switch (f.kind) {
    case "timeout":
      // Queued: ferry's own max_concurrent limit kept the request from being sent at all.
      if (f.phase === "queued") return new RegistryError("UNAVAILABLE", `every place ferry allows for the upstream (max_concurrent) stayed taken for ${what}`, { status: 503 });
      return new RegistryError("UNAVAILABLE", `upstream timed out (${f.phase}) for ${what}`, { status: 504 });
    case "network":
      return new RegistryError("UNAVAILABLE", `upstream unreachable for ${what}: ${f.message}`, { status: 503 });
    case "status": {
      const upstreamSays = f.message ? `: ${f.message}` : "";
      if (f.status === 404) {
        const code = f.code === "NAME_UNKNOWN" || f.code === notFound ? f.code : notFound;
        return new RegistryError(code, `${what} not found upstream${upstreamSays}`);
      }
      if (f.foreign && f.status !== 429) {
        // Every tier answered with something in front of the registry (an HTML page): not the registry's verdict.
        return new RegistryError("UNAVAILABLE", `upstream answered HTTP ${f.status} that is not a registry answer (a page from a proxy or CDN in front of it) for ${what}`, { status: 502 });
      }
      if (f.status === 429) {
        const headers: Record<string, string> = f.retryAfterSeconds !== undefined ? { "Retry-After": String(f.retryAfterSeconds) } : {};
        return new RegistryError("TOOMANYREQUESTS", `upstream rate limit reached for ${what}${upstreamSays}`, { headers });
      }
      if (f.status === 401) return new RegistryError("UNAUTHORIZED", `upstream requires authentication for ${what}${upstreamSays}`);
      if (f.status === 403) return new RegistryError("DENIED", `upstream denied access to ${what}${upstreamSays}`);
      if (f.status >= 500) return new RegistryError("UNAVAILABLE", `upstream error ${f.status} for ${what}${upstreamSays}`, { status: 502 });
      const code: ErrorCode = isErrorCode(f.code) ? f.code : "UNKNOWN";
      return new RegistryError(code, `upstream answered ${f.status} for ${what}${upstreamSays}`, { status: 502 });
    }
  }
}
