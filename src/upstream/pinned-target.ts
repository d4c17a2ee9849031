// Where ferry may connect when an upstream names the host (a redirect target, a token
// realm). The name is resolved once; any non-public address (or no address) refuses it;
// the request then goes to that very address with the name kept in Host and TLS SNI, so
// a second lookup inside fetch cannot rebind it to another address.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { isNonPublicAddress } from "../protocol/ip.ts";

/** All addresses of a host name. */
export type Resolver = (hostname: string) => Promise<string[]>;

export const systemResolver: Resolver = async (hostname) => (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

export interface PinnedTarget {
  /** The URL to fetch: the resolved address in place of the name. */
  url: URL;
  /** What fetch needs to reach the name at that address (Host header, TLS server name). */
  init: { headers: Record<string, string>; tls?: { serverName: string } };
}

/** Names what was refused ("non-public address 10.0.0.1", "x.test (does not resolve)"); callers add "refused". */
export class TargetRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TargetRefused";
  }
}

/**
 * Resolves `url`'s host once and pins it. Unless `allowPrivate`, a host that is (or
 * resolves, even partly, to) a loopback, private or link-local address is refused, and
 * so is one that does not resolve.
 */
export async function pinTarget(url: URL, allowPrivate: boolean, resolve: Resolver = systemResolver): Promise<PinnedTarget> {
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TargetRefused(url.protocol);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host)) {
    if (!allowPrivate && isNonPublicAddress(host)) throw new TargetRefused(`non-public address ${host}`);
    return { url, init: { headers: {} } };
  }
  if (!allowPrivate && (host === "localhost" || host.endsWith(".localhost"))) throw new TargetRefused(`non-public address ${host}`);
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (error) {
    throw new TargetRefused(`${host} (does not resolve: ${(error as Error).message})`);
  }
  // IPv4 first: a host without IPv6 routes is common, and a pinned target has no fallback.
  const address = addresses.find((a) => isIP(a) === 4) ?? addresses.find((a) => isIP(a));
  if (!address) throw new TargetRefused(`${host} (does not resolve)`);
  const nonPublic = allowPrivate ? undefined : addresses.find((a) => isNonPublicAddress(a));
  if (nonPublic) throw new TargetRefused(`${host} (resolves to non-public address ${nonPublic})`);
  const pinned = new URL(url);
  pinned.hostname = isIP(address) === 6 ? `[${address}]` : address;
  return { url: pinned, init: { headers: { Host: url.host }, ...(url.protocol === "https:" && { tls: { serverName: host } }) } };
}
