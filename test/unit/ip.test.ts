import { describe, expect, test } from "bun:test";
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
