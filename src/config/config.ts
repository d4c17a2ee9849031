// The validated, typed configuration every other module reads.

import pkg from "../../package.json" with { type: "json" };

/** What ferry says it is upstream: Cloudflare (Docker Hub's front) answers requests without a User-Agent with an HTML 403. */
export const DEFAULT_USER_AGENT = `ferry/${pkg.version}`;

export interface EndpointConfig {
  url: string; // origin (and optional path prefix) of a registry API, no trailing slash
  username?: string;
  password?: string;
  timeoutMs: number; // connect + time to response headers
  stallTimeoutMs: number; // longest silence in a body before the stream counts as broken
  proxy?: string; // egress HTTP(S) proxy for this endpoint
  headers: Record<string, string>; // extra request headers (e.g. a relay's shared secret)
  allowPrivateRedirects: boolean; // follow redirects to loopback/private/link-local addresses
  maxConcurrent?: number; // upstream requests in flight at once (to response headers)
  repositoryPrefix?: string; // a secondary mirror's path scheme: /v2/<prefix>/<repository>/…
  ns?: string; // containerd's scheme: ?ns=<registry> on every request
  maxBandwidth?: number; // bytes per second for blob bodies from this endpoint, shared by its downloads
  userAgent: string; // sent on every request to this endpoint, token fetches included
}

/** Cooldowns and the circuit breaker of each upstream endpoint (see upstream/health.ts). */
export interface HealthPolicy {
  rateLimitCooldownMs: number; // 429 without Retry-After / reset headers
  failureCooldownMs: number; // first failure; doubles per consecutive failure
  maxCooldownMs: number;
  failureThreshold: number; // consecutive failures that open the circuit
}

export const DEFAULT_HEALTH_POLICY: HealthPolicy = {
  rateLimitCooldownMs: 60_000,
  failureCooldownMs: 10_000,
  maxCooldownMs: 5 * 60_000,
  failureThreshold: 3,
};

export interface RegistryConfig {
  name: string; // "docker.io", "ghcr.io", …: also the path prefix and the ?ns= value
  hosts: string[]; // Host headers that select this registry
  endpoints: EndpointConfig[]; // tried in order (manifests, tags, and blobs unless blobEndpoints)
  blobEndpoints?: EndpointConfig[]; // a different order for blobs, when set
  health: HealthPolicy;
  /** Pull without logging in (when [auth] is on). */
  anonymous: boolean;
  /** Clients log in with their own upstream credentials; access is checked upstream. */
  passthroughAuth: boolean;
  allow: string[]; // repository globs; empty = everything
  deny: string[];
  maxConcurrent?: number; // upstream requests in flight per endpoint
  tagPolicy: RegistryTagPolicy;
}

/** How long tag → digest mappings are trusted; unset keys fall back (rule → registry → [cache]). */
export interface TagPolicySettings {
  tagTtlMs?: number;
  immutableTags?: string[]; // regular expressions, each matched against the whole tag
}

export interface RegistryTagPolicy extends TagPolicySettings {
  rules: (TagPolicySettings & { repositories: string[] })[]; // repository globs; first match wins
}

export interface AuthSettings {
  htpasswd?: string;
  tokens: string[];
  tokenSecret?: string;
  tokenTtlMs: number;
  service: string;
}

export interface LimitSettings {
  requestsPerMinute?: number;
  concurrentDownloads?: number;
  bytes?: { limit: number; windowMs: number };
  bandwidth?: number; // bytes per second of blob bodies to one client, shared by its downloads
  exempt: string[]; // CIDRs
  authenticatedExempt: boolean;
  trustedProxies: string[]; // CIDRs whose X-Forwarded-For is believed
  blockUserAgents: string[]; // regular expressions
  /** Failed logins per client and per user name before further logins wait out the window. */
  loginFailures: { limit: number; windowMs: number };
  /** Per-minute budgets of their own for /token, the operator pages (/ui, /api/*, /metrics) and /v1/*. */
  tokenRequestsPerMinute: number;
  adminRequestsPerMinute: number;
  searchRequestsPerMinute: number;
  /** IPv6 clients count per prefix of this length (one /64 is one household or one server). */
  ipv6Prefix: number;
}

export interface RedisSettings {
  url?: string;
  keyPrefix: string;
  sentinels?: string[];
  sentinelName?: string;
  clusterNodes?: string[];
  lockLeaseMs: number; // how long a dead replica's single-flight lease blocks the others
}

export interface S3Settings {
  endpoint?: string;
  bucket: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  prefix: string;
  redirect: boolean;
  redirectTtlSeconds: number;
  publicBaseUrl?: string;
}

/** [search]: the /v1/search relay (docker search, the landing page's search box). */
export interface SearchSettings {
  enabled: boolean;
  upstream: string; // a Docker Hub-style index: GET <upstream>/v1/search?q=&n=&page=
  timeoutMs: number;
  cacheTtlMs: number;
}

/** [server.acme]: where ferry gets its certificate, and when it renews it. */
export interface AcmeSettings {
  domains: string[]; // the certificate's names: acme.domains, then every registry's `hosts`
  email?: string;
  directoryUrl: string; // an RFC 8555 directory (Let's Encrypt production by default)
  eab?: { kid: string; hmacKey: string }; // external account binding (ZeroSSL, Google, private CAs)
  storageDir: string; // account key, certificate and key on disk (also a copy when Redis shares them)
  caFile?: string; // PEM bundle trusted for the directory's HTTPS (a private CA such as pebble)
  redirectHttp: boolean; // plain-HTTP /v2/ requests answer 308 to https:// once a certificate is served
  renewBeforeMs: number; // renew this long before expiry (at most a third of the lifetime)
  retryMinMs: number; // first retry after a failed order; doubled per failure
  retryMaxMs: number;
}

/** The HTTPS listener: static files (tls_cert/tls_key, reloaded on SIGHUP) or ACME. */
export interface TlsSettings {
  hostname: string;
  port: number;
  cert?: string;
  key?: string;
  acme?: AcmeSettings;
}

export interface Config {
  /** memoryLimit: the soft RSS limit in bytes (0: off), see shared/memory-limit.ts. */
  server: { hostname: string; port: number; publicUrl?: string; peerUrl?: string; idleTimeoutSeconds: number; memoryLimit: number; tls?: TlsSettings };
  auth?: AuthSettings;
  limits: LimitSettings;
  /** maxDownloads: blob downloads (upstream or shared store → local tier) running at once, for everyone. */
  cache: { dir: string; maxSize?: number; tagTtlMs: number; negativeTtlMs: number; referrersTtlMs: number; maxDownloads: number };
  redis?: RedisSettings;
  s3?: S3Settings;
  log: { level: string };
  search?: SearchSettings; // always set by load.ts
  registries: RegistryConfig[];
}
