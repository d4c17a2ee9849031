// The validated, typed configuration every other module reads.

import type { HealthPolicy } from "../upstream/health.ts";

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
}

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
  exempt: string[]; // CIDRs
  authenticatedExempt: boolean;
  trustedProxies: string[]; // CIDRs whose X-Forwarded-For is believed
  blockUserAgents: string[]; // regular expressions
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

export interface Config {
  server: { hostname: string; port: number; publicUrl?: string; peerUrl?: string; idleTimeoutSeconds: number; tls?: { hostname: string; port: number; cert: string; key: string } };
  auth?: AuthSettings;
  limits: LimitSettings;
  cache: { dir: string; maxSize?: number; tagTtlMs: number; negativeTtlMs: number };
  redis?: RedisSettings;
  s3?: S3Settings;
  log: { level: string };
  search?: SearchSettings; // always set by load.ts
  registries: RegistryConfig[];
}
