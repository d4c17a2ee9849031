// Config file (TOML) + environment → one validated Config. Errors name the key.
import { Value } from "@sinclair/typebox/value";
import { BUILTIN_REGISTRIES } from "./builtin-registries.ts";
import { DEFAULT_HEALTH_POLICY, DEFAULT_USER_AGENT, type Config, type EndpointConfig, type RegistryConfig, type TagPolicySettings } from "./config.ts";
import { parseCidr } from "../protocol/ip.ts";
import { ConfigFileSchema, type ConfigFile, type EndpointFile, type RegistryFile, type TagPolicyFile } from "./schema.ts";
import { parseDuration, parseRate, parseSize } from "./units.ts";

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(`config: ${key}: ${problem}`);
    this.name = "ConfigError";
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_STALL_TIMEOUT_MS = 30_000;
/** Below the 200 MiB peak RSS bench/ holds ferry to; above what a warm manifest load settles at (~165 MiB). */
const DEFAULT_MEMORY_LIMIT = "176MiB";
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Environment variables that override file keys (documented in config.example.toml). */
const ENV_KEYS: Record<string, [section: "server" | "cache" | "log" | "redis" | "s3", key: string]> = {
  FERRY_REDIS_URL: ["redis", "url"],
  FERRY_S3_ENDPOINT: ["s3", "endpoint"],
  FERRY_S3_BUCKET: ["s3", "bucket"],
  FERRY_S3_REGION: ["s3", "region"],
  FERRY_S3_ACCESS_KEY_ID: ["s3", "access_key_id"],
  FERRY_S3_SECRET_ACCESS_KEY: ["s3", "secret_access_key"],
  FERRY_LISTEN: ["server", "listen"],
  FERRY_PUBLIC_URL: ["server", "public_url"],
  FERRY_PEER_URL: ["server", "peer_url"],
  FERRY_MEMORY_LIMIT: ["server", "memory_limit"],
  FERRY_CACHE_DIR: ["cache", "dir"],
  FERRY_CACHE_MAX_SIZE: ["cache", "max_size"],
  FERRY_TAG_TTL: ["cache", "tag_ttl"],
  FERRY_NEGATIVE_TTL: ["cache", "negative_ttl"],
  FERRY_LOG_LEVEL: ["log", "level"],
};

export async function loadConfigFile(path: string | undefined, env: Record<string, string | undefined> = process.env): Promise<Config> {
  let text = "";
  if (path) {
    const file = Bun.file(path);
    if (!(await file.exists())) throw new ConfigError(path, "config file not found");
    text = await file.text();
  }
  return parseConfig(text, env);
}

export function parseConfig(tomlText: string, env: Record<string, string | undefined> = {}): Config {
  let raw: unknown;
  try {
    raw = tomlText.trim() === "" ? {} : Bun.TOML.parse(tomlText);
  } catch (error) {
    throw new ConfigError("(file)", `not valid TOML: ${(error as Error).message}`);
  }
  const file = raw as Record<string, Record<string, unknown> | undefined>;
  for (const [name, [section, key]] of Object.entries(ENV_KEYS)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    file[section] ??= {};
    file[section]![key] = value;
  }
  const firstError = Value.Errors(ConfigFileSchema, file).First();
  if (firstError) throw new ConfigError(keyOf(firstError.path, file), schemaProblem(firstError.message, firstError.value));
  return build(file as ConfigFile);
}

function keyOf(pointer: string, file: unknown): string {
  // "/registry/0/endpoints/1" → "registry[0].endpoints[1]"; for an unknown key TypeBox
  // points at the object, so name the offending key too.
  return pointer
    .split("/")
    .filter(Boolean)
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "") || unknownKey(file);
}

function unknownKey(file: unknown): string {
  const known = ["server", "cache", "log", "auth", "limits", "redis", "s3", "search", "registry"];
  const extra = Object.keys(file as object).find((k) => !known.includes(k));
  return extra ?? "(file)";
}

function schemaProblem(message: string, value: unknown): string {
  if (/unexpected property|additional/i.test(message)) return "unknown key";
  return `${message.toLowerCase()} (got ${JSON.stringify(value)})`;
}

function build(file: ConfigFile): Config {
  const listen = parseListen(file.server?.listen ?? "0.0.0.0:5000");
  const publicUrl = file.server?.public_url;
  if (publicUrl !== undefined && !isHttpUrl(publicUrl)) throw new ConfigError("server.public_url", `must be an http(s) URL (got "${publicUrl}")`);
  const peerUrl = file.server?.peer_url;
  if (peerUrl !== undefined && !isHttpUrl(peerUrl)) throw new ConfigError("server.peer_url", `must be an http(s) URL (got "${peerUrl}")`);
  const level = file.log?.level ?? "info";
  if (!LOG_LEVELS.includes(level)) throw new ConfigError("log.level", `must be one of ${LOG_LEVELS.join(", ")} (got "${level}")`);
  const auth = buildAuth(file.auth);
  return {
    server: { ...listen, publicUrl: publicUrl?.replace(/\/+$/, ""), idleTimeoutSeconds: idleTimeout(file.server?.idle_timeout), memoryLimit: size("server.memory_limit", file.server?.memory_limit ?? DEFAULT_MEMORY_LIMIT), tls: buildTls(file), ...(peerUrl ? { peerUrl: peerUrl.replace(/\/+$/, "") } : {}) },
    auth,
    limits: buildLimits(file.limits),
    cache: {
      dir: file.cache?.dir ?? "./data",
      maxSize: file.cache?.max_size === undefined ? undefined : size("cache.max_size", file.cache.max_size),
      tagTtlMs: duration("cache.tag_ttl", file.cache?.tag_ttl ?? "5m"),
      negativeTtlMs: duration("cache.negative_ttl", file.cache?.negative_ttl ?? "30s"),
      referrersTtlMs: duration("cache.referrers_ttl", file.cache?.referrers_ttl ?? "1m"),
      maxDownloads: file.cache?.max_downloads ?? 64,
    },
    log: { level },
    redis: buildRedis(file.redis),
    s3: buildS3(file.s3),
    search: buildSearch(file.search),
    registries: buildRegistries(file.registry ?? [], auth === undefined || (file.auth?.anonymous ?? false), auth !== undefined),
  };
}

function buildSearch(s: ConfigFile["search"]): Config["search"] {
  const upstream = s?.upstream ?? "https://index.docker.io";
  if (!isHttpUrl(upstream)) throw new ConfigError("search.upstream", `must be an http(s) URL (got "${upstream}")`);
  return {
    enabled: s?.enabled ?? true,
    upstream: upstream.replace(/\/+$/, ""),
    timeoutMs: duration("search.timeout", s?.timeout ?? "10s"),
    cacheTtlMs: duration("search.cache_ttl", s?.cache_ttl ?? "1m"),
  };
}

/** Bun closes a connection silent for this long (its maximum is 255 s): bounds slow clients. */
function idleTimeout(value: string | number | undefined): number {
  const seconds = Math.round(duration("server.idle_timeout", value ?? "120s") / 1000);
  if (seconds < 1 || seconds > 255) throw new ConfigError("server.idle_timeout", `must be between 1s and 255s (got ${seconds}s)`);
  return seconds;
}

function buildTls(file: ConfigFile): Config["server"]["tls"] {
  const server = file.server;
  if (!server?.tls_cert && !server?.tls_key && !server?.tls_listen && !server?.acme) return undefined;
  const listen = parseListen(server.tls_listen ?? "0.0.0.0:5443", "server.tls_listen");
  if (server.acme) {
    if (server.tls_cert || server.tls_key) throw new ConfigError("server.acme", "cannot be combined with tls_cert/tls_key (pick one source of certificates)");
    return { ...listen, acme: buildAcme(server.acme, file) };
  }
  if (!server.tls_cert) throw new ConfigError("server.tls_cert", "is required for TLS (with tls_key)");
  if (!server.tls_key) throw new ConfigError("server.tls_key", "is required for TLS (with tls_cert)");
  return { ...listen, cert: server.tls_cert, key: server.tls_key };
}

const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function buildAcme(a: NonNullable<NonNullable<ConfigFile["server"]>["acme"]>, file: ConfigFile): NonNullable<Config["server"]["tls"]>["acme"] {
  // The names served: the configured domains, then every registry's Host names (without a port).
  const hosts = (file.registry ?? []).filter((r) => r.enabled !== false).flatMap((r) => r.hosts ?? []);
  const domains = [...new Set([...(a.domains ?? []), ...hosts].map((d) => d.toLowerCase().replace(/:\d+$/, "")))];
  if (domains.length === 0) throw new ConfigError("server.acme.domains", "needs at least one domain name (or a registry with hosts)");
  domains.forEach((d, i) => {
    if (!DNS_NAME.test(d)) throw new ConfigError(`server.acme.domains[${i}]`, `must be a DNS name like "mirror.example.com" (got "${d}")`);
  });
  const directoryUrl = a.directory_url ?? LETS_ENCRYPT;
  if (!isHttpUrl(directoryUrl)) throw new ConfigError("server.acme.directory_url", `must be an http(s) URL (got "${directoryUrl}")`);
  if (Boolean(a.eab_kid) !== Boolean(a.eab_hmac_key)) throw new ConfigError(a.eab_kid ? "server.acme.eab_hmac_key" : "server.acme.eab_kid", "is required with the other EAB key");
  if (a.email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(a.email)) throw new ConfigError("server.acme.email", `must be an email address (got "${a.email}")`);
  const retryMinMs = duration("server.acme.retry_min", a.retry_min ?? "10s");
  const retryMaxMs = duration("server.acme.retry_max", a.retry_max ?? "1h");
  if (retryMinMs < 1000 || retryMaxMs < retryMinMs) throw new ConfigError("server.acme.retry_min", "must be at least 1s and at most retry_max");
  return {
    domains,
    email: a.email,
    directoryUrl,
    eab: a.eab_kid && a.eab_hmac_key ? { kid: a.eab_kid, hmacKey: a.eab_hmac_key } : undefined,
    storageDir: a.storage ?? `${(file.cache?.dir ?? "./data").replace(/\/+$/, "")}/acme`,
    caFile: a.ca_file,
    redirectHttp: a.redirect_http ?? true,
    renewBeforeMs: duration("server.acme.renew_before", a.renew_before ?? "30d"),
    retryMinMs,
    retryMaxMs,
  };
}

function buildAuth(a: ConfigFile["auth"]): Config["auth"] {
  if (!a) return undefined;
  if (!a.htpasswd && !a.tokens?.length) throw new ConfigError("auth", "needs htpasswd or tokens (or remove [auth] to allow everyone)");
  if (a.token_secret !== undefined && a.token_secret.length < 32) throw new ConfigError("auth.token_secret", "must be at least 32 characters");
  if (a.tokens?.some((t) => t.length < 16)) throw new ConfigError("auth.tokens", "each token must be at least 16 characters");
  return {
    htpasswd: a.htpasswd,
    tokens: a.tokens ?? [],
    tokenSecret: a.token_secret,
    tokenTtlMs: duration("auth.token_ttl", a.token_ttl ?? "5m"),
    service: a.service ?? "ferry",
  };
}

function buildLimits(l: ConfigFile["limits"]): Config["limits"] {
  const cidrs = (key: string, list: string[] | undefined) =>
    (list ?? []).map((c, i) => {
      if (!parseCidr(c)) throw new ConfigError(`limits.${key}[${i}]`, `not an IP address or CIDR range (got "${c}")`);
      return c;
    });
  let bytes: LimitBytes | undefined;
  if (l?.bytes !== undefined) {
    const [amount = "", window = ""] = l.bytes.split("/");
    const limit = parseSize(amount);
    const windowMs = parseDuration(window);
    if (limit === undefined || windowMs === undefined || windowMs === 0) throw new ConfigError("limits.bytes", `must look like "20GiB/1h" (got "${l.bytes}")`);
    bytes = { limit, windowMs };
  }
  let loginFailures = DEFAULT_LOGIN_FAILURES;
  if (l?.login_failures !== undefined) {
    const [count = "", window = ""] = l.login_failures.split("/");
    const windowMs = parseDuration(window);
    if (!/^\d+$/.test(count) || Number(count) < 1 || windowMs === undefined || windowMs === 0) {
      throw new ConfigError("limits.login_failures", `must look like "10/15m" (got "${l.login_failures}")`);
    }
    loginFailures = { limit: Number(count), windowMs };
  }
  (l?.block_user_agents ?? []).forEach((re, i) => {
    try {
      new RegExp(re, "i");
    } catch {
      throw new ConfigError(`limits.block_user_agents[${i}]`, `not a valid regular expression (got "${re}")`);
    }
  });
  return {
    ...(l?.bandwidth !== undefined && { bandwidth: rate("limits.bandwidth", l.bandwidth) }),
    requestsPerMinute: l?.requests_per_minute,
    concurrentDownloads: l?.concurrent_downloads,
    bytes,
    exempt: cidrs("exempt", l?.exempt),
    authenticatedExempt: l?.authenticated_exempt ?? true,
    trustedProxies: cidrs("trusted_proxies", l?.trusted_proxies),
    blockUserAgents: l?.block_user_agents ?? [],
    loginFailures,
    tokenRequestsPerMinute: l?.token_requests_per_minute ?? 120,
    adminRequestsPerMinute: l?.admin_requests_per_minute ?? 300,
    searchRequestsPerMinute: l?.search_requests_per_minute ?? 60,
    ipv6Prefix: l?.ipv6_prefix ?? 64,
  };
}

/** 10 failed logins per 15 minutes, per client and per user name: a person mistyping is never stopped, a guesser is. */
const DEFAULT_LOGIN_FAILURES = { limit: 10, windowMs: 15 * 60_000 };

type LimitBytes = { limit: number; windowMs: number };

function buildRedis(r: ConfigFile["redis"]): Config["redis"] {
  if (!r) return undefined;
  if (!r.url && !r.sentinels?.length && !r.cluster_nodes?.length) throw new ConfigError("redis.url", "needs url, sentinels or cluster_nodes");
  if (r.url && !/^rediss?:\/\//.test(r.url)) throw new ConfigError("redis.url", `must start with redis:// or rediss:// (got "${r.url.replace(/\/\/[^@]*@/, "//***@")}")`);
  return {
    url: r.url,
    keyPrefix: r.key_prefix ?? "ferry:",
    sentinels: r.sentinels,
    sentinelName: r.sentinel_name,
    clusterNodes: r.cluster_nodes,
    lockLeaseMs: duration("redis.lock_lease", r.lock_lease ?? "15s"),
  };
}

function buildS3(s: ConfigFile["s3"]): Config["s3"] {
  if (!s) return undefined;
  if (!s.bucket) throw new ConfigError("s3.bucket", "is required when [s3] is set");
  if (s.endpoint !== undefined && !isHttpUrl(s.endpoint)) throw new ConfigError("s3.endpoint", `must be an http(s) URL (got "${s.endpoint}")`);
  if (s.public_base_url !== undefined && !isHttpUrl(s.public_base_url)) throw new ConfigError("s3.public_base_url", `must be an http(s) URL (got "${s.public_base_url}")`);
  const prefix = s.prefix ?? "";
  if (prefix && !/^[A-Za-z0-9._\/-]+$/.test(prefix)) throw new ConfigError("s3.prefix", `may hold letters, digits, "._-/" only (got "${prefix}")`);
  return {
    endpoint: s.endpoint,
    bucket: s.bucket,
    region: s.region ?? "us-east-1",
    accessKeyId: s.access_key_id ?? process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: s.secret_access_key ?? process.env.AWS_SECRET_ACCESS_KEY,
    forcePathStyle: s.force_path_style ?? s.endpoint !== undefined,
    prefix: prefix && !prefix.endsWith("/") ? `${prefix}/` : prefix,
    redirect: s.redirect ?? false,
    redirectTtlSeconds: Math.round(duration("s3.redirect_ttl", s.redirect_ttl ?? "5m") / 1000),
    publicBaseUrl: s.public_base_url?.replace(/\/+$/, ""),
  };
}

function buildRegistries(entries: RegistryFile[], anonymousDefault: boolean, authOn: boolean): RegistryConfig[] {
  const byName = new Map<string, RegistryConfig>();
  for (const builtin of BUILTIN_REGISTRIES) {
    byName.set(builtin.name, { name: builtin.name, hosts: [], endpoints: [endpoint(builtin.name, builtin.endpoint, {})], health: DEFAULT_HEALTH_POLICY, anonymous: anonymousDefault, passthroughAuth: false, allow: [], deny: [], tagPolicy: { rules: [] } });
  }
  const seen = new Set<string>();
  entries.forEach((entry, i) => {
    const key = `registry[${i}]`;
    const name = entry.name.toLowerCase();
    if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$/.test(name)) throw new ConfigError(`${key}.name`, `must be a registry host name like "ghcr.io" (got "${entry.name}")`);
    if (seen.has(name)) throw new ConfigError(`${key}.name`, `registry "${name}" is configured twice`);
    seen.add(name);
    if (entry.enabled === false) {
      byName.delete(name);
      return;
    }
    const existing = byName.get(name);
    const defaults: EndpointDefaults = { username: entry.username, password: entry.password, timeout: entry.timeout, stall_timeout: entry.stall_timeout, proxy: entry.proxy, allow_private_redirects: entry.allow_private_redirects, max_bandwidth: entry.max_bandwidth, user_agent: entry.user_agent };
    const specs: EndpointFile[] | undefined = entry.endpoints ?? existing?.endpoints.map((e) => e.url);
    if (!specs) throw new ConfigError(`${key}.endpoints`, `registry "${name}" is not built in, so it needs endpoints`);
    if (specs.length === 0) throw new ConfigError(`${key}.endpoints`, "needs at least one endpoint");
    const capped = (e: EndpointConfig): EndpointConfig => ({ ...e, maxConcurrent: entry.max_concurrent });
    const endpoints = specs.map((e, j) => capped(endpoint(`${key}.endpoints[${j}]`, e, defaults)));
    const blobEndpoints = entry.blob_endpoints?.map((e, j) => capped(endpoint(`${key}.blob_endpoints[${j}]`, e, defaults)));
    if (blobEndpoints?.length === 0) throw new ConfigError(`${key}.blob_endpoints`, "needs at least one endpoint when set");
    const health = {
      ...DEFAULT_HEALTH_POLICY,
      ...(entry.cooldown !== undefined && { rateLimitCooldownMs: duration(`${key}.cooldown`, entry.cooldown) }),
      ...(entry.failure_cooldown !== undefined && { failureCooldownMs: duration(`${key}.failure_cooldown`, entry.failure_cooldown) }),
      ...(entry.failure_threshold !== undefined && { failureThreshold: entry.failure_threshold }),
    };
    for (const [listKey, list] of [["allow", entry.allow], ["deny", entry.deny]] as const) repositoryGlobs(`${key}.${listKey}`, list ?? []);
    if (entry.passthrough_auth) refuseOperatorCredentials(key, entry, authOn);
    byName.set(name, {
      name,
      hosts: (entry.hosts ?? []).map((h) => h.toLowerCase()),
      endpoints,
      blobEndpoints,
      health,
      anonymous: entry.anonymous ?? anonymousDefault,
      passthroughAuth: entry.passthrough_auth ?? false,
      allow: entry.allow ?? [],
      deny: entry.deny ?? [],
      maxConcurrent: entry.max_concurrent,
      tagPolicy: {
        ...tagPolicySettings(key, entry),
        rules: (entry.tag_policy ?? []).map((rule, j) => {
          const ruleKey = `${key}.tag_policy[${j}]`;
          const repositories = typeof rule.repositories === "string" ? [rule.repositories] : rule.repositories;
          if (repositories.length === 0) throw new ConfigError(`${ruleKey}.repositories`, "needs at least one repository glob");
          return { repositories: repositoryGlobs(`${ruleKey}.repositories`, repositories), ...tagPolicySettings(ruleKey, rule) };
        }),
      },
    });
  });
  return [...byName.values()];
}

/**
 * A passthrough registry sees exactly each client's upstream rights: clients bring their
 * credentials through ferry's login ([auth]), and the operator's would stand in for
 * anonymous and htpasswd clients, so they are refused rather than ignored.
 */
function refuseOperatorCredentials(key: string, entry: RegistryFile, authOn: boolean): void {
  if (!authOn) throw new ConfigError(`${key}.passthrough_auth`, "needs [auth]: clients log in through ferry's token service to bring their own upstream credentials");
  const why = "a passthrough_auth registry uses each client's own upstream credentials; the operator's would be used for anonymous and htpasswd clients (remove it)";
  for (const field of ["username", "password"] as const) if (entry[field] !== undefined) throw new ConfigError(`${key}.${field}`, why);
  for (const [listKey, list] of [["endpoints", entry.endpoints], ["blob_endpoints", entry.blob_endpoints]] as const) {
    (list ?? []).forEach((e, j) => {
      if (typeof e === "string") return;
      for (const field of ["username", "password"] as const) if (e[field] !== undefined) throw new ConfigError(`${key}.${listKey}[${j}].${field}`, why);
    });
  }
}

function repositoryGlobs(key: string, globs: string[]): string[] {
  globs.forEach((glob, j) => {
    if (!/^[a-z0-9._\/*-]+$/.test(glob)) throw new ConfigError(`${key}[${j}]`, `a repository glob like "library/*" or "grafana/**" (got "${glob}")`);
  });
  return globs;
}

function tagPolicySettings(key: string, entry: Pick<TagPolicyFile, "tag_ttl" | "immutable_tags">): TagPolicySettings {
  (entry.immutable_tags ?? []).forEach((re, j) => {
    try {
      new RegExp(re);
    } catch {
      throw new ConfigError(`${key}.immutable_tags[${j}]`, `not a valid regular expression (got "${re}")`);
    }
  });
  return {
    ...(entry.tag_ttl !== undefined && { tagTtlMs: duration(`${key}.tag_ttl`, entry.tag_ttl) }),
    ...(entry.immutable_tags !== undefined && { immutableTags: entry.immutable_tags }),
  };
}

type EndpointDefaults = Pick<Exclude<EndpointFile, string>, "username" | "password" | "timeout" | "stall_timeout" | "proxy" | "allow_private_redirects" | "max_bandwidth" | "user_agent">;

/** An endpoint's settings: its own keys first, then the registry's. */
function endpoint(key: string, value: EndpointFile, defaults: EndpointDefaults): EndpointConfig {
  const spec = typeof value === "string" ? { url: value } : value;
  const merged = { ...defaults, ...Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) } as Exclude<EndpointFile, string>;
  if (!isHttpUrl(merged.url)) throw new ConfigError(key, `must be an http(s) URL (got "${merged.url}")`);
  if (merged.proxy !== undefined && !isHttpUrl(merged.proxy)) throw new ConfigError(`${key}.proxy`, `must be an http(s) URL (got "${merged.proxy}")`);
  return {
    url: merged.url.replace(/\/+$/, ""),
    username: merged.username,
    password: merged.password,
    timeoutMs: merged.timeout === undefined ? DEFAULT_TIMEOUT_MS : duration(`${key}.timeout`, merged.timeout),
    stallTimeoutMs: merged.stall_timeout === undefined ? DEFAULT_STALL_TIMEOUT_MS : duration(`${key}.stall_timeout`, merged.stall_timeout),
    proxy: merged.proxy,
    headers: merged.headers ?? {},
    allowPrivateRedirects: merged.allow_private_redirects ?? false,
    ...(merged.repository_prefix !== undefined && { repositoryPrefix: repositoryPrefix(`${key}.repository_prefix`, merged.repository_prefix) }),
    ...(merged.ns !== undefined && { ns: nsValue(`${key}.ns`, merged.ns) }),
    ...(merged.max_bandwidth !== undefined && { maxBandwidth: rate(`${key}.max_bandwidth`, merged.max_bandwidth) }),
    userAgent: merged.user_agent ?? DEFAULT_USER_AGENT,
  };
}

function repositoryPrefix(key: string, value: string): string {
  const prefix = value.replace(/^\/+|\/+$/g, "");
  if (!/^[a-z0-9]+(?:[._:-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(prefix)) throw new ConfigError(key, `a repository path prefix like "docker.io" or "mirror/ghcr.io" (got "${value}")`);
  return prefix;
}

function nsValue(key: string, value: string): string {
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$/.test(value)) throw new ConfigError(key, `a registry host name like "ghcr.io" (got "${value}")`);
  return value;
}

export function parseListen(value: string, key = "server.listen"): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim()) ?? /^()()(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(key, `must be "host:port" or ":port" (got "${value}")`);
  return { hostname: m[1] || m[2] || "0.0.0.0", port };
}

function duration(key: string, value: string | number): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new ConfigError(key, `must be a duration like "30s", "5m" or "1h" (got ${JSON.stringify(value)})`);
  return ms;
}

function rate(key: string, value: string | number): number {
  const bytesPerSecond = parseRate(value);
  if (bytesPerSecond === undefined) throw new ConfigError(key, `must be a rate like "50MiB/s" (got ${JSON.stringify(value)})`);
  return bytesPerSecond;
}

function size(key: string, value: string | number): number {
  const bytes = parseSize(value);
  if (bytes === undefined) throw new ConfigError(key, `must be a size like "512MiB" or "50GB" (got ${JSON.stringify(value)})`);
  return bytes;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}
