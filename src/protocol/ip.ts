// IP addresses and CIDR ranges (IPv4 and IPv6), for redirect safety, trusted proxies and
// limits. Pure TypeScript (no node:net): the relay imports it on Cloudflare Workers too.

/** An address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96), or undefined. */
export function ipToBigInt(address: string): bigint | undefined {
  const ip = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const v4 = ipv4ToBigInt(ip);
  if (v4 !== undefined) return 0xffff00000000n | v4;
  return ipv6ToBigInt(ip);
}

/** Dotted-quad IPv4, four decimal parts of 0-255 without leading zeros (as node:net's isIP). */
function ipv4ToBigInt(ip: string): bigint | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function ipv6ToBigInt(ip: string): bigint | undefined {
  if (!ip.includes(":")) return undefined;
  let text = ip;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) becomes two hex groups.
  const tail4 = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail4) {
    const n = ipv4ToBigInt(tail4[1]!);
    if (n === undefined) return undefined;
    text = text.slice(0, -tail4[1]!.length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export interface Cidr {
  base: bigint;
  prefix: number; // in the 128-bit space
}

/** "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128). */
export function parseCidr(text: string): Cidr | undefined {
  const [addr = "", bits] = text.trim().split("/");
  const base = ipToBigInt(addr);
  if (base === undefined) return undefined;
  const v4 = ipv4ToBigInt(addr) !== undefined;
  const max = v4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) return undefined;
  const full = v4 ? prefix + 96 : prefix;
  return { base: base & mask(full), prefix: full };
}

function mask(prefix: number): bigint {
  return prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  const ip = ipToBigInt(address);
  return ip !== undefined && (ip & mask(cidr.prefix)) === cidr.base;
}

const NON_PUBLIC = [
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
  "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
  // ::/96 holds ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d; fec0::/10 is the
  // deprecated site-local range; 100::/64 discards; 64:ff9b::/96 is NAT64 into IPv4.
  "::/96", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "64:ff9b::/96", "100::/64",
].map((c) => parseCidr(c)!);

/** Loopback, private, link-local, CGNAT, multicast or unspecified: not a public host. */
export function isNonPublicAddress(address: string): boolean {
  return NON_PUBLIC.some((c) => cidrContains(c, address));
}

/**
 * A URL's hostname that is not a public host on its face: localhost names, or a loopback,
 * private, link-local, CGNAT or reserved IP literal. DNS names are judged by whoever can
 * resolve them (ferry does; a Worker cannot, and its subrequests reach no private network).
 */
export function isNonPublicHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  return isNonPublicAddress(host);
}
