import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { parseDuration, parseSize } from "../../src/config/units.ts";

describe("units", () => {
  test("durations", () => {
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration("30")).toBe(30_000);
    expect(parseDuration("5 minutes")).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
  });
  test("sizes", () => {
    expect(parseSize("512MiB")).toBe(512 * 1024 ** 2);
    expect(parseSize("50GB")).toBe(50e9);
    expect(parseSize("1.5 GiB")).toBe(Math.floor(1.5 * 1024 ** 3));
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize("lots")).toBeUndefined();
  });
});

describe("config", () => {
  test("defaults: embedded storage, Docker Hub and the built-in registries", () => {
    const c = parseConfig("");
    expect(c.server).toEqual({ hostname: "0.0.0.0", port: 5000, publicUrl: undefined });
    expect(c.cache.dir).toBe("./data");
    expect(c.cache.tagTtlMs).toBe(300_000);
    expect(c.registries.find((r) => r.name === "docker.io")?.endpoints[0]?.url).toBe("https://registry-1.docker.io");
    expect(c.registries.map((r) => r.name)).toContain("ghcr.io");
  });
  test("file keys and environment overrides", () => {
    const c = parseConfig(
      `[server]\nlisten = "127.0.0.1:6000"\n[cache]\ndir = "/var/cache/ferry"\ntag_ttl = "1m"\nmax_size = "10GiB"\n[[registry]]\nname = "docker.io"\nendpoints = ["http://127.0.0.1:9/", { url = "https://relay.example.com", timeout = "5s" }]\nusername = "u"\npassword = "p"`,
      { FERRY_LISTEN: ":7000", FERRY_CACHE_DIR: "/tmp/x" },
    );
    expect(c.server.port).toBe(7000);
    expect(c.server.hostname).toBe("0.0.0.0");
    expect(c.cache.dir).toBe("/tmp/x");
    expect(c.cache.tagTtlMs).toBe(60_000);
    expect(c.cache.maxSize).toBe(10 * 1024 ** 3);
    const hub = c.registries.find((r) => r.name === "docker.io")!;
    expect(hub.endpoints).toMatchObject([
      { url: "http://127.0.0.1:9", username: "u", password: "p", timeoutMs: 30_000 },
      { url: "https://relay.example.com", username: "u", password: "p", timeoutMs: 5_000 },
    ]);
  });
  test("tiers: per-endpoint headers, proxy and timeouts; blob_endpoints; health policy", () => {
    const c = parseConfig(
      `[[registry]]\nname = "docker.io"\nproxy = "http://127.0.0.1:3128"\ncooldown = "2m"\nfailure_threshold = 5\n` +
        `endpoints = ["https://registry-1.docker.io", { url = "https://relay.example.com", headers = { "x-ferry-relay-secret" = "s" }, stall_timeout = "7s", proxy = "http://127.0.0.1:8888" }]\n` +
        `blob_endpoints = ["https://relay.example.com"]`,
    );
    const hub = c.registries.find((r) => r.name === "docker.io")!;
    expect(hub.endpoints[0]).toMatchObject({ proxy: "http://127.0.0.1:3128", headers: {}, stallTimeoutMs: 30_000 });
    expect(hub.endpoints[1]).toMatchObject({ proxy: "http://127.0.0.1:8888", headers: { "x-ferry-relay-secret": "s" }, stallTimeoutMs: 7_000 });
    expect(hub.blobEndpoints?.map((e) => e.url)).toEqual(["https://relay.example.com"]);
    expect(hub.health.rateLimitCooldownMs).toBe(120_000);
    expect(hub.health.failureThreshold).toBe(5);
  });
  test("a built-in registry can be disabled, a new one added", () => {
    const c = parseConfig(`[[registry]]\nname = "quay.io"\nenabled = false\n[[registry]]\nname = "registry.example.com"\nendpoints = ["https://registry.example.com"]\nhosts = ["reg.mirror.example.com"]`);
    expect(c.registries.map((r) => r.name)).not.toContain("quay.io");
    expect(c.registries.find((r) => r.name === "registry.example.com")?.hosts).toEqual(["reg.mirror.example.com"]);
  });
  test.each([
    ['[server]\nlisten = "nope"', "server.listen"],
    ['[server]\nlistn = ":1"', "server.listn"],
    ['[cache]\ntag_ttl = "soon"', "cache.tag_ttl"],
    ["[cache]\nmax_size = true", "cache.max_size"],
    ['[log]\nlevel = "loud"', "log.level"],
    ['[[registry]]\nname = "new.example.com"', "registry[0].endpoints"],
    ['[[registry]]\nname = "docker.io"\nendpoints = ["ftp://x"]', "registry[0].endpoints[0]"],
    ['[[registry]]\nname = "docker.io"\n[[registry]]\nname = "docker.io"', "registry[1].name"],
    ["surprise = 1", "surprise"],
    ["[server\n", "(file)"],
  ])("invalid config %p names %p", (text, key) => {
    let error: unknown;
    try {
      parseConfig(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe(key);
  });
});
