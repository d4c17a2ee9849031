// How an upstream request failed, as a value the server can map to an OCI error.

export type UpstreamFailure =
  | { kind: "status"; status: number; code?: string; message?: string; retryAfterSeconds?: number }
  | { kind: "network"; message: string }
  | { kind: "timeout"; phase: "headers" | "body" };

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
      return `HTTP ${f.status}${f.code ? ` ${f.code}` : ""}${f.message ? `: ${f.message}` : ""}`;
    case "network":
      return `network error (${f.message})`;
    case "timeout":
      return `timeout waiting for ${f.phase}`;
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
  let code: string | undefined;
  let message: string | undefined;
  try {
    const text = (await response.text()).slice(0, 64 * 1024);
    const parsed = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = parsed.errors?.[0];
    if (typeof first?.code === "string") code = first.code;
    if (typeof first?.message === "string") message = first.message;
  } catch {
    // Not an OCI error body (the Docker Hub abuse limit is a bare 429, for one).
  }
  return { kind: "status", status: response.status, code, message, retryAfterSeconds: parseRetryAfter(response.headers.get("retry-after")) };
}
