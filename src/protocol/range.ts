// HTTP Range for blobs. Registries serve single byte ranges; multi-range
// requests are answered with the whole blob, which RFC 9110 allows.

export type ByteRange = { start: number; end: number }; // inclusive, like Content-Range

export type RangeRequest =
  | { kind: "none" }
  | { kind: "range"; range: ByteRange }
  | { kind: "unsatisfiable" };

// The range unit is case-insensitive (RFC 9110 14.1), as Bun itself treats it.
const SINGLE = /^bytes=(\d{0,15})-(\d{0,15})$/i;

/** Resolves a Range header against a known size. Malformed or multi-range headers are ignored. */
export function parseRange(header: string | null | undefined, size: number): RangeRequest {
  if (!header) return { kind: "none" };
  const m = SINGLE.exec(header.trim());
  if (!m) return { kind: "none" };
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return { kind: "none" };
  if (first === "") {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", range: { start: Math.max(0, size - n), end: size - 1 } };
  }
  const start = Number(first);
  if (start >= size) return { kind: "unsatisfiable" };
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (end < start) return { kind: "none" };
  return { kind: "range", range: { start, end } };
}

/** Parses an upstream's "Content-Range: bytes a-b/size" header. */
export function parseContentRange(header: string | null): (ByteRange & { size?: number }) | undefined {
  if (!header) return undefined;
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  if (!m) return undefined;
  const size = m[3] === "*" ? undefined : Number(m[3]);
  return { start: Number(m[1]), end: Number(m[2]), size };
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
