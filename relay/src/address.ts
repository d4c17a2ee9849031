// Which URLs the relay may be sent to by an upstream (redirect Locations, token realms).
// Only IP literals and localhost names can be judged here: Workers cannot resolve DNS, and a
// Workers subrequest cannot reach private networks anyway. On a VPS, a DNS name that resolves
// to a private address is the operator's upstream's doing, not the client's.

function ipv4Octets(host: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : undefined;
}

function isPrivateIPv4([a, b]: number[]): boolean {
  if (a === undefined || b === undefined) return false;
  return (
    a === 0 || // "this network"
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    a >= 224 // multicast, reserved, broadcast
  );
}

/** Expands an IPv6 literal (without brackets) to 8 numbers, or undefined if it is not one. */
function ipv6Groups(host: string): number[] | undefined {
  if (!host.includes(":")) return undefined;
  let text = host.split("%")[0]!;
  // A trailing dotted IPv4 part ("::ffff:127.0.0.1") becomes two groups.
  const v4 = /(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(text);
  if (v4) {
    const o = ipv4Octets(v4[1]!);
    if (!o) return undefined;
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return groups.some(Number.isNaN) ? undefined : groups;
}

function isPrivateIPv6(g: number[]): boolean {
  const [g0 = 0, , , , , g5 = 0, g6 = 0, g7 = 0] = g;
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(7) && (g7 === 0 || g7 === 1)) return true; // :: and ::1
  if (zeroUpTo(5) && g5 === 0xffff) return isPrivateIPv4([g6 >> 8, g6 & 0xff]); // IPv4-mapped
  if (zeroUpTo(6)) return isPrivateIPv4([g6 >> 8, g6 & 0xff]); // IPv4-compatible (deprecated)
  return (
    (g0 & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (g0 & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (g0 & 0xffc0) === 0xfec0 || // site-local (deprecated)
    (g0 & 0xff00) === 0xff00 // multicast
  );
}

/** True for localhost names and loopback/private/link-local/reserved IP literals. */
export function isPrivateHost(hostname: string): boolean {
  // URL keeps IPv6 literals in brackets and already normalises "2130706433", "0x7f.1" and the like to dotted IPv4.
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const v4 = ipv4Octets(host);
  if (v4) return isPrivateIPv4(v4);
  const v6 = ipv6Groups(host);
  if (v6) return isPrivateIPv6(v6);
  return false;
}
