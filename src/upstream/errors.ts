// How an upstream request failed, as a value the server can map to an OCI error.

export type UpstreamFailure =
  /** `foreign`: the body is not the registry's error JSON (an HTML page from a CDN or proxy in front of it). */
  | { kind: "status"; status: number; code?: string; message?: string; retryAfterSeconds?: number; foreign?: boolean }
  | { kind: "network"; message: string }
  | { kind: "timeout"; phase: "headers" | "body" | "queued" };

export class UpstreamError extends Error {
  constructor(
    readonly endpoint: string,
    readonly failure: UpstreamFailure,
  ) {
    super(`${describe(failure)} from ${endpoint}`);
    this.name = "UpstreamError";
  }
}

function describe(f: UpstreamFailure): string {
  switch (f.kind) {
    case "status":
      return `HTTP ${f.status}${f.code ? ` ${f.code}` : ""}${f.message ? `: ${f.message}` : ""}${f.foreign ? " (not a registry answer)" : ""}`;
    case "network":
      return `network error (${f.message})`;
    case "timeout":
      return f.phase === "queued" ? "every max_concurrent place stayed taken for the timeout" : `timeout waiting for ${f.phase}`;
  }
}

/** Statuses after which the next endpoint (tier) is worth asking. */
export function isFailoverStatus(status: number): boolean {
  return status === 429 || status === 408 || status >= 500;
}

/** Retry-After as seconds (delta or HTTP date). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Reads an upstream error response into a failure value (body is small JSON, bounded). */
export async function failureFromResponse(response: Response): Promise<UpstreamFailure> {
  return failureFrom(response.status, response.headers, await response.text());
}

/** An upstream error answer as a failure value; its body decides whether the registry itself said it. */
export function failureFrom(status: number, headers: Headers, body: string): UpstreamFailure {
  const parsed = registryErrorBody(body);
  const retryAfterSeconds = parseRetryAfter(headers.get("retry-after"));
  if (parsed) return { kind: "status", status, code: parsed.code, message: parsed.message, retryAfterSeconds };
  // Not an OCI error body (the Docker Hub abuse limit is a bare 429, for one).
  return { kind: "status", status, retryAfterSeconds, ...(isForeignAnswer(headers, body) && { foreign: true }) };
}

/**
 * Whether an error answer comes from something in front of the registry rather than the
 * registry (Cloudflare's HTML "Just a moment…" 403, an HTML 429 page): an HTML type, or
 * a body that is not the registry's error JSON. A HEAD's empty body proves nothing.
 */
export function isForeignAnswer(headers: Headers, body: string): boolean {
  if (/html/i.test(headers.get("content-type") ?? "")) return true;
  return body.trim() !== "" && !registryErrorBody(body);
}

function registryErrorBody(text: string): { code?: string; message?: string } | undefined {
  try {
    const parsed = JSON.parse(text.slice(0, 64 * 1024)) as { errors?: { code?: unknown; message?: unknown }[] };
    if (!Array.isArray(parsed?.errors)) return undefined;
    const first = parsed.errors[0];
    return { code: typeof first?.code === "string" ? first.code : undefined, message: typeof first?.message === "string" ? first.message : undefined };
  } catch {
    return undefined;
  }
}

/** An upstream answer that is not what was asked for (too large, not the expected document): never cached or passed on. */
export class InvalidAnswer extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidAnswer";
  }
}
