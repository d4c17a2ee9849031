// Issue 19.2: which freshness policy a tag gets (pure resolver over the parsed config).
import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { TagPolicy } from "../../src/registry/tag-policy.ts";

const CONFIG = `
[cache]
tag_ttl = "5m"
[[registry]]
name = "docker.io"
tag_ttl = "10m"
immutable_tags = ["v?[0-9]+\\\\.[0-9]+\\\\.[0-9]+"]
[[registry.tag_policy]]
repositories = "library/*"
tag_ttl = "1h"
[[registry.tag_policy]]
repositories = ["grafana/**", "bitnami/redis"]
immutable_tags = []
tag_ttl = "30s"
[[registry]]
name = "ghcr.io"
`;

describe("tag policy", () => {
  const config = parseConfig(CONFIG);
  const policy = new TagPolicy(config.cache.tagTtlMs, config.registries);

  test("the first matching repository rule wins; each key falls back to the registry, then [cache]", () => {
    expect(policy.resolve("docker.io", "library/alpine", "latest")).toEqual({ immutable: false, ttlMs: 3_600_000, rule: "docker.io tag_policy[0] (library/*)" });
    // The rule sets no immutable_tags: the registry's apply.
    expect(policy.resolve("docker.io", "library/alpine", "3.19.1")).toEqual({ immutable: true, ttlMs: Infinity, rule: "docker.io tag_policy[0] (library/*)" });
    expect(policy.resolve("docker.io", "grafana/loki/x", "v2.9.0")).toEqual({ immutable: false, ttlMs: 30_000, rule: "docker.io tag_policy[1] (grafana/**, bitnami/redis)" });
    expect(policy.resolve("docker.io", "someone/app", "v1.2.3")).toEqual({ immutable: true, ttlMs: Infinity, rule: "docker.io" });
    expect(policy.resolve("docker.io", "someone/app", "stable")).toEqual({ immutable: false, ttlMs: 600_000, rule: "docker.io" });
    expect(policy.resolve("ghcr.io", "owner/img", "v1.2.3")).toEqual({ immutable: false, ttlMs: 300_000, rule: "cache.tag_ttl" });
  });

  test("immutable patterns match the whole tag", () => {
    expect(policy.resolve("docker.io", "someone/app", "v1.2.3-rc1").immutable).toBe(false);
    expect(policy.resolve("docker.io", "someone/app", "xv1.2.3").immutable).toBe(false);
  });

  test("ttlMs: what ManifestService asks", () => {
    expect(policy.ttlMs({ registry: "docker.io", repository: "someone/app" }, "1.2.3")).toBe(Infinity);
    expect(policy.ttlMs({ registry: "docker.io", repository: "someone/app" }, "latest")).toBe(600_000);
    expect(policy.ttlMs({ registry: "unknown.example", repository: "x" }, "latest")).toBe(300_000);
  });

  test("config errors name the key", () => {
    expect(() => parseConfig(`[[registry]]\nname = "docker.io"\nimmutable_tags = ["v(["]`)).toThrow(new ConfigError("registry[0].immutable_tags[0]", 'not a valid regular expression (got "v([")'));
    expect(() => parseConfig(`[[registry]]\nname = "docker.io"\ntag_ttl = "soon"`)).toThrow(ConfigError);
    expect(() => parseConfig(`[[registry]]\nname = "docker.io"\n[[registry.tag_policy]]\nrepositories = "Library/*"`)).toThrow(new ConfigError("registry[0].tag_policy[0].repositories[0]", 'a repository glob like "library/*" or "grafana/**" (got "Library/*")'));
    expect(() => parseConfig(`[[registry]]\nname = "docker.io"\n[[registry.tag_policy]]\ntag_ttl = "1m"`)).toThrow(ConfigError);
  });
});
