// Who the client is, network-wise: the peer address, or, when the peer is a trusted
// proxy, the right-most X-Forwarded-For entry that is not itself a trusted proxy.
import { cidrContains, parseCidr, type Cidr } from "../protocol/ip.ts";

/** Peer addresses of requests that arrived on another listener (the TLS one): Elysia only knows its own. */
export const peerAddresses = new WeakMap<Request, string>();

/** The TCP peer of a request, on either listener. */
export function peerOf(request: Request, server: { requestIP(r: Request): { address: string } | null } | null): string {
  return peerAddresses.get(request) ?? server?.requestIP(request)?.address ?? "0.0.0.0";
}

export class ClientIpResolver {
  private readonly trusted: Cidr[];

  constructor(trustedProxies: string[]) {
    this.trusted = trustedProxies.map((c) => parseCidr(c)!);
  }

  private isTrusted(ip: string): boolean {
    return this.trusted.some((c) => cidrContains(c, ip));
  }

  resolve(peer: string, forwardedFor: string | null): string {
    if (!forwardedFor || !this.isTrusted(peer)) return peer;
    const hops = forwardedFor.split(",").map((h) => h.trim()).filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.replace(/^\[|\](:\d+)?$/g, "");
      if (!this.isTrusted(hop)) return parseCidr(hop) ? hop : peer;
    }
    return hops[0] ?? peer;
  }
}
