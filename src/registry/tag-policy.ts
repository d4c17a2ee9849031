// Which freshness a tag gets: the first [[registry.tag_policy]] rule whose repository
// glob matches, then the registry's own keys, then [cache] tag_ttl. A tag matching an
// immutable_tags pattern keeps its cached mapping forever (never revalidated).
import type { RegistryConfig, TagPolicySettings } from "../config/config.ts";
import { globToRegExp } from "../protocol/names.ts";
import type { RepositoryRef } from "../cache/meta-store.ts";

export interface TagPolicyDecision {
  immutable: boolean;
  /** How long a cached mapping is used without asking upstream; Infinity when immutable. */
  ttlMs: number;
  /** Where the decision came from: "cache.tag_ttl", "docker.io", "docker.io tag_policy[0] (library/*)". */
  rule: string;
}

interface CompiledSettings {
  tagTtlMs?: number;
  immutable?: RegExp[];
}

interface CompiledRegistry extends CompiledSettings {
  rules: (CompiledSettings & { repositories: RegExp[]; name: string })[];
}

export class TagPolicy {
  private readonly registries = new Map<string, CompiledRegistry>();

  constructor(
    private readonly defaultTtlMs: number,
    registries: readonly RegistryConfig[],
  ) {
    for (const r of registries) {
      this.registries.set(r.name, {
        ...compile(r.tagPolicy),
        rules: r.tagPolicy.rules.map((rule, i) => ({ ...compile(rule), repositories: rule.repositories.map(globToRegExp), name: `${r.name} tag_policy[${i}] (${rule.repositories.join(", ")})` })),
      });
    }
  }

  resolve(registry: string, repository: string, tag: string): TagPolicyDecision {
    const r = this.registries.get(registry);
    if (!r) return { immutable: false, ttlMs: this.defaultTtlMs, rule: "cache.tag_ttl" };
    const rule = r.rules.find((x) => x.repositories.some((re) => re.test(repository)));
    const immutable = (rule?.immutable ?? r.immutable ?? []).some((re) => re.test(tag));
    const ttlMs = rule?.tagTtlMs ?? r.tagTtlMs;
    const name = rule?.name ?? (ttlMs !== undefined || r.immutable?.length ? registry : "cache.tag_ttl");
    if (immutable) return { immutable: true, ttlMs: Infinity, rule: name };
    return { immutable: false, ttlMs: ttlMs ?? this.defaultTtlMs, rule: name };
  }

  /** What ManifestService asks before trusting a cached tag → digest mapping. */
  ttlMs(repo: RepositoryRef, tag: string): number {
    return this.resolve(repo.registry, repo.repository, tag).ttlMs;
  }
}

function compile(s: TagPolicySettings): CompiledSettings {
  return { tagTtlMs: s.tagTtlMs, immutable: s.immutableTags?.map((re) => new RegExp(`^(?:${re})$`)) };
}
