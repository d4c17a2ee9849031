// Human units in the config file: durations ("90s", "5m", "1h30m", or seconds as a
// number) and sizes ("512MiB", "50GB", or bytes as a number).

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3, ti: 1024 ** 4, tib: 1024 ** 4,
};

/** Milliseconds, or undefined when the text is not a duration. Plain numbers are seconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const text = value.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let matched = 0;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched++;
  }
  return matched > 0 ? total : undefined;
}

/** Bytes, or undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.floor(Number(m[1]) * unit);
}

/** Bytes per second from "50MiB/s" or "1GiB/1m" (plain numbers are bytes per second); undefined when not a positive rate. */
export function parseRate(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value > 0 ? value : undefined;
  const slash = value.lastIndexOf("/");
  if (slash < 0) return undefined;
  const bytes = parseSize(value.slice(0, slash));
  const per = value.slice(slash + 1).trim();
  const ms = /^[a-z]+$/i.test(per) ? parseDuration(`1${per}`) : parseDuration(per);
  if (bytes === undefined || bytes <= 0 || ms === undefined || ms <= 0) return undefined;
  return (bytes * 1000) / ms;
}
