// The one place where anything thrown while serving becomes an OCI error response.
import { RegistryError } from "../protocol/errors.ts";

export function toRegistryErrorResponse(error: unknown, method: string): { error: RegistryError; response: Response } {
  // Config errors end at startup or reload, never in a request: anything else is ferry's own fault.
  const registryError = error instanceof RegistryError ? error : new RegistryError("UNKNOWN", "internal server error");
  const headers: Record<string, string> = {
    "Content-Type": "application/json; charset=utf-8",
    "Docker-Distribution-API-Version": "registry/2.0",
    ...registryError.headers,
  };
  const body = JSON.stringify(registryError.toJSON());
  headers["Content-Length"] = String(Buffer.byteLength(body));
  return { error: registryError, response: new Response(method === "HEAD" ? null : body, { status: registryError.status, headers }) };
}
