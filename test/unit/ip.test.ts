import { describe, expect, test } from "bun:test";
import { vetTarget } from "../../relay/src/upstream.ts";
import { cidrContains, ipToBigInt, isNonPublicAddress, parseCidr } from "../../src/protocol/ip.ts";

describe("IP addresses", () => {
  test.each(["127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fe80::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "[::1]", "224.0.0.1"])(
    "%p is not public",
    (a) => expect(isNonPublicAddress(a)).toBe(true),
  );
  test.each(["1.1.1.1", "8.8.8.8", "172.32.0.1", "192.169.0.1", "2606:4700::1111", "::ffff:1.1.1.1"])("%p is public", (a) => expect(isNonPublicAddress(a)).toBe(false));
  test("not an address", () => {
    expect(ipToBigInt("example.com")).toBeUndefined();
    expect(isNonPublicAddress("example.com")).toBe(false);
  });
  test("CIDR matching across families", () => {
    const v4 = parseCidr("10.0.0.0/8")!;
    expect(cidrContains(v4, "10.200.0.1")).toBe(true);
    expect(cidrContains(v4, "::ffff:10.200.0.1")).toBe(true);
    expect(cidrContains(v4, "11.0.0.1")).toBe(false);
    const v6 = parseCidr("2001:db8::/32")!;
    expect(cidrContains(v6, "2001:db8:1::5")).toBe(true);
    expect(cidrContains(v6, "2001:db9::5")).toBe(false);
    expect(cidrContains(parseCidr("192.0.2.7")!, "192.0.2.7")).toBe(true);
    expect(parseCidr("10.0.0.0/33")).toBeUndefined();
    expect(parseCidr("nonsense/8")).toBeUndefined();
  });
});

describe("one private-address list for ferry and the relay", () => {
  // Where each used to miss what the other caught: 192.0.0.0/24, 64:ff9b::/96 (NAT64),
  // fec0::/10 (site-local), ::a.b.c.d (IPv4-compatible), 100::/64 (discard).
  const nonPublic = ["127.0.0.1", "10.1.2.3", "192.0.0.8", "198.18.0.1", "100.64.0.1", "169.254.169.254", "224.0.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0", "::1", "::", "fd00::1", "fe80::1", "fec0::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::a00:1", "ff02::1", "100::1"];
  const open = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2001:4860::8888"];
  const relayRefuses = (address: string) => {
    const host = address.includes(":") ? `[${address}]` : address;
    try {
      vetTarget(new URL(`http://${host}/`), "https://registry.example", false);
      return false;
    } catch {
      return true;
    }
  };
  test.each(nonPublic)("%p: not public to ferry, refused by the relay", (a) => expect({ ferry: isNonPublicAddress(a), relay: relayRefuses(a) }).toEqual({ ferry: true, relay: true }));
  test.each(open)("%p: public to both", (a) => expect({ ferry: isNonPublicAddress(a), relay: relayRefuses(a) }).toEqual({ ferry: false, relay: false }));
});
