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
    expect(c.server).toEqual({ hostname: "0.0.0.0", port: 5000, publicUrl: undefined, idleTimeoutSeconds: 120, memoryLimit: 176 * 1024 ** 2, tls: undefined });
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
    expect(parseConfig(`[server]\nmemory_limit = "1GiB"`).server.memoryLimit).toBe(1024 ** 3);
    expect(parseConfig("", { FERRY_MEMORY_LIMIT: "0" }).server.memoryLimit).toBe(0);
    expect(() => parseConfig(`[server]\nmemory_limit = "lots"`)).toThrow("server.memory_limit");
    const hub = c.registries.find((r) => r.name === "docker.io")!;
    expect(hub.endpoints).toMatchObject([
      { url: "http://127.0.0.1:9", username: "u", password: "p", timeoutMs: 30_000 },
      { url: "https://relay.example.com", username: "u", password: "p", timeoutMs: 5_000 },
    ]);
  });
  test("user_agent: ferry/<version> by default, per registry, per endpoint", async () => {
    const pkg = (await Bun.file(`${import.meta.dir}/../../package.json`).json()) as { version: string };
    const c = parseConfig(`[[registry]]\nname = "docker.io"\nuser_agent = "acme-mirror/2"\nendpoints = ["https://registry-1.docker.io", { url = "https://relay.example.com", user_agent = "acme-relay/1" }]`);
    expect(c.registries.find((r) => r.name === "docker.io")!.endpoints.map((e) => e.userAgent)).toEqual(["acme-mirror/2", "acme-relay/1"]);
    expect(c.registries.find((r) => r.name === "ghcr.io")!.endpoints[0]!.userAgent).toBe(`ferry/${pkg.version}`);
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
  test("auth, limits and per-registry access keys", () => {
    const c = parseConfig(
      `[auth]\nhtpasswd = "/etc/ferry/htpasswd"\ntoken_ttl = "2m"\n[limits]\nrequests_per_minute = 600\nbytes = "20GiB/1h"\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n` +
        `[[registry]]\nname = "docker.io"\nanonymous = true\nallow = ["library/*"]\n[[registry]]\nname = "ghcr.io"\npassthrough_auth = true`,
    );
    expect(c.auth).toMatchObject({ htpasswd: "/etc/ferry/htpasswd", tokens: [], tokenTtlMs: 120_000, service: "ferry" });
    expect(c.limits).toMatchObject({ requestsPerMinute: 600, bytes: { limit: 20 * 1024 ** 3, windowMs: 3_600_000 }, trustedProxies: ["10.0.0.0/8", "::1"], authenticatedExempt: true });
    const byName = (n: string) => c.registries.find((r) => r.name === n)!;
    expect(byName("docker.io")).toMatchObject({ anonymous: true, allow: ["library/*"], passthroughAuth: false });
    expect(byName("ghcr.io")).toMatchObject({ anonymous: false, passthroughAuth: true });
    expect(byName("quay.io").anonymous).toBe(false); // auth on: login required unless a registry says otherwise
    expect(parseConfig("").registries.every((r) => r.anonymous)).toBe(true); // no [auth]: everyone may pull
  });
  test("login back-off, page budgets and the IPv6 prefix: defaults on, keys named when wrong", () => {
    expect(parseConfig("").limits).toMatchObject({ loginFailures: { limit: 10, windowMs: 900_000 }, tokenRequestsPerMinute: 120, adminRequestsPerMinute: 300, searchRequestsPerMinute: 60, ipv6Prefix: 64 });
    const c = parseConfig(`[limits]\nlogin_failures = "3/1h"\ntoken_requests_per_minute = 5\nipv6_prefix = 56`);
    expect(c.limits).toMatchObject({ loginFailures: { limit: 3, windowMs: 3_600_000 }, tokenRequestsPerMinute: 5, ipv6Prefix: 56 });
    for (const bad of [`login_failures = "often"`, `login_failures = "0/1h"`, `login_failures = "5/0s"`]) expect(() => parseConfig(`[limits]\n${bad}`)).toThrow(/limits\.login_failures/);
    expect(() => parseConfig(`[limits]\nipv6_prefix = 129`)).toThrow(/ipv6_prefix/);
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
    ["[auth]\nanonymous = true", "auth"],
    ['[auth]\ntokens = ["short"]', "auth.tokens"],
    ['[auth]\ntokens = ["a-long-enough-static-token"]\ntoken_secret = "tiny"', "auth.token_secret"],
    ['[limits]\nbytes = "lots"', "limits.bytes"],
    ['[limits]\ntrusted_proxies = ["10.0.0.0/99"]', "limits.trusted_proxies[0]"],
    ['[limits]\nblock_user_agents = ["(unclosed"]', "limits.block_user_agents[0]"],
    ['[server]\ntls_cert = "/x.pem"', "server.tls_key"],
    ['[server]\nidle_timeout = "10m"', "server.idle_timeout"],
    ['[[registry]]\nname = "docker.io"\ndeny = ["Bad Glob!"]', "registry[0].deny[0]"],
    ['[redis]\nurl = "http://x"', "redis.url"],
    ["[s3]\nregion = \"x\"", "s3.bucket"],
    ["[server\n", "(file)"],
    // Issue 16: passthrough sees only the client's rights, so it needs client logins and no operator account.
    ['[[registry]]\nname = "quay.io"\npassthrough_auth = true', "registry[0].passthrough_auth"],
    ['[auth]\ntokens = ["a-long-enough-static-token"]\n[[registry]]\nname = "quay.io"\npassthrough_auth = true\nusername = "ops"\npassword = "x"', "registry[0].username"],
    ['[auth]\ntokens = ["a-long-enough-static-token"]\n[[registry]]\nname = "quay.io"\npassthrough_auth = true\npassword = "x"', "registry[0].password"],
    ['[auth]\ntokens = ["a-long-enough-static-token"]\n[[registry]]\nname = "quay.io"\npassthrough_auth = true\nendpoints = ["https://quay.io", { url = "https://relay.example.com", username = "ops", password = "x" }]', "registry[0].endpoints[1].username"],
    ["[server.acme]\nemail = \"ops@example.com\"", "server.acme.domains"],
    ['[server.acme]\ndomains = ["not a name"]', "server.acme.domains[0]"],
    ['[server.acme]\ndomains = ["a.example.com"]\neab_kid = "k"', "server.acme.eab_hmac_key"],
    ['[server.acme]\ndomains = ["a.example.com"]\nemail = "nobody"', "server.acme.email"],
    ['[server.acme]\ndomains = ["a.example.com"]\ndirectory_url = "ftp://x"', "server.acme.directory_url"],
    ['[server.acme]\ndomains = ["a.example.com"]\nretry_min = "2h"', "server.acme.retry_min"],
    ['[server.acme]\ndomains = ["a.example.com"]\nsurprise = 1', "server.acme.surprise"],
    ['[server]\ntls_cert = "/c.pem"\ntls_key = "/k.pem"\n[server.acme]\ndomains = ["a.example.com"]', "server.acme"],
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
