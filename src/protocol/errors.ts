// The OCI distribution error codes ferry answers with, and their HTTP statuses.
// Every failure a client sees is a RegistryError by the time it leaves the server
// (see server/errors.ts, the one place where other errors are mapped).

export const ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  NAME_UNKNOWN: 404,
  NAME_INVALID: 400,
  DIGEST_INVALID: 400,
  TAG_INVALID: 400,
  MANIFEST_INVALID: 400,
  RANGE_INVALID: 416,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class RegistryError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly detail: unknown;
  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: { status?: number; headers?: Record<string, string>; detail?: unknown } = {},
  ) {
    super(message);
    this.name = "RegistryError";
    this.status = opts.status ?? ERROR_STATUS[code];
    this.headers = opts.headers ?? {};
    this.detail = opts.detail;
  }

  toJSON(): { errors: { code: string; message: string; detail?: unknown }[] } {
    const error: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) error.detail = this.detail;
    return { errors: [error] };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && value in ERROR_STATUS;
}
