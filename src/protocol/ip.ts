// IP addresses and CIDR ranges (IPv4 and IPv6), for redirect safety and trusted proxies.
import { isIP } from "node:net";

/** An address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96), or undefined. */
export function ipToBigInt(address: string): bigint | undefined {
  const ip = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const family = isIP(ip);
  if (family === 4) return 0xffff00000000n | ipv4ToBigInt(ip);
  if (family !== 6) return undefined;
  let text = ip;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipv4ToBigInt(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail === undefined ? [] : tail ? tail.split(":") : [];
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill("0"), ...tailGroups];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || "0", 16)), 0n);
}

function ipv4ToBigInt(ip: string): bigint {
  return ip.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
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
  const v4 = isIP(addr) === 4;
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
  "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96",
].map((c) => parseCidr(c)!);

/** Loopback, private, link-local, CGNAT, multicast or unspecified: not a public host. */
export function isNonPublicAddress(address: string): boolean {
  return NON_PUBLIC.some((c) => cidrContains(c, address));
}
