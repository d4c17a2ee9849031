// OCI distribution error responses: every failure the relay itself produces reaches the client
// as {"errors":[{"code":…,"message":…}]}, the body registries send, so clients report it sensibly.

export type RelayErrorCode =
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "DIGEST_INVALID"
  | "TAG_INVALID"
  | "RANGE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "UNAVAILABLE"
  | "UNKNOWN";

/** Every relay response says it speaks the registry API; Docker checks this on /v2/. */
export const API_VERSION_HEADER = ["Docker-Distribution-API-Version", "registry/2.0"] as const;

/** A failure decided inside the relay, turned into an OCI error response by the handler. */
export class RelayError extends Error {
  constructor(
    readonly status: number,
    readonly code: RelayErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RelayError";
  }
}

export function errorResponse(status: number, code: RelayErrorCode, message: string, headers?: Record<string, string>): Response {
  const h = new Headers(headers);
  h.set("Content-Type", "application/json");
  h.set(...API_VERSION_HEADER);
  return new Response(JSON.stringify({ errors: [{ code, message }] }), { status, headers: h });
}
