// The one place where anything thrown while serving becomes an OCI error response.
import { ConfigError } from "../config/load.ts";
import { RegistryError } from "../protocol/errors.ts";

export function toRegistryErrorResponse(error: unknown, method: string): { error: RegistryError; response: Response } {
  const registryError =
    error instanceof RegistryError
      ? error
      : error instanceof ConfigError
        ? new RegistryError("UNKNOWN", error.message)
        : new RegistryError("UNKNOWN", "internal server error");
  const headers: Record<string, string> = {
    "Content-Type": "application/json; charset=utf-8",
    "Docker-Distribution-API-Version": "registry/2.0",
    ...registryError.headers,
  };
  const body = JSON.stringify(registryError.toJSON());
  headers["Content-Length"] = String(Buffer.byteLength(body));
  return { error: registryError, response: new Response(method === "HEAD" ? null : body, { status: registryError.status, headers }) };
}
