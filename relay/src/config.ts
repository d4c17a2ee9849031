// The relay's configuration: which registries it relays to, and who may use it.
// Parsed from Cloudflare Workers vars or a process environment (both are plain string maps).

export interface RelayRegistry {
  /** Base URL of the registry's API, e.g. "https://registry-1.docker.io". */
  upstream: string;
}

export interface RelayConfig {
  /** Keyed by the name clients use for the registry ("docker.io", "ghcr.io"). */
  registries: Record<string, RelayRegistry>;
  /** Registry for paths without a prefix or ?ns=. Default: docker.io if configured, else the only registry. */
  defaultRegistry?: string;
  /** Shared secret every request must carry in `secretHeader`. Required unless `open`. */
  secret?: string;
  /** Relay for anyone, without a secret: only when said on purpose (a private network, tests). */
  open?: boolean;
  /** Header holding the secret (default "x-ferry-relay-secret"). */
  secretHeader?: string;
  /** Follow redirects and token realms to loopback/private/link-local addresses (tests, private CDNs). */
  allowPrivateRedirects?: boolean;
  /** Origin clients reach the relay at, for token realms (e.g. behind a TLS proxy). Default: the request's origin. */
  publicUrl?: string;
  /** How long to wait for upstream response headers (ms, default 30000). Bodies stream without a deadline. */
  upstreamTimeoutMs?: number;
}

export const DEFAULT_SECRET_HEADER = "x-ferry-relay-secret";
const DEFAULT_REGISTRIES = "docker.io=https://registry-1.docker.io";
const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000;

/** The config after validation: every optional field resolved. */
export interface ResolvedRelayConfig {
  registries: ReadonlyMap<string, URL>;
  defaultRegistry: string | undefined;
  secret: string | undefined;
  secretHeader: string;
  allowPrivateRedirects: boolean;
  publicUrl: string | undefined;
  upstreamTimeoutMs: number;
}

export class RelayConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
    this.name = "RelayConfigError";
  }
}

/** A registry name as clients write it: a lower-case host, optionally with a port. */
const REGISTRY_NAME = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/;
/** RFC 7230 token, the shape of a header name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function httpUrl(key: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RelayConfigError(key, `"${value}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new RelayConfigError(key, `"${value}" must be http or https`);
  if (url.search || url.hash || url.username || url.password) {
    throw new RelayConfigError(key, `"${value}" must not carry a query, fragment or credentials`);
  }
  url.pathname = url.pathname.replace(/\/+$/, ""); // joined with "/v2/…" later
  return url;
}

/** Validates a config (from code or from parseRelayConfig) and fills in the defaults. */
export function resolveRelayConfig(config: RelayConfig): ResolvedRelayConfig {
  const registries = new Map<string, URL>();
  for (const [name, registry] of Object.entries(config.registries)) {
    if (!REGISTRY_NAME.test(name)) throw new RelayConfigError("registries", `"${name}" is not a registry host name`);
    registries.set(name, httpUrl(`registries.${name}`, registry.upstream));
  }
  if (registries.size === 0) throw new RelayConfigError("registries", "at least one registry is needed");

  let defaultRegistry = config.defaultRegistry || undefined;
  if (defaultRegistry !== undefined && !registries.has(defaultRegistry)) {
    throw new RelayConfigError("defaultRegistry", `"${defaultRegistry}" is not one of the configured registries`);
  }
  if (defaultRegistry === undefined) {
    if (registries.has("docker.io")) defaultRegistry = "docker.io";
    else if (registries.size === 1) defaultRegistry = [...registries.keys()][0];
  }

  if (!config.secret && !config.open) {
    throw new RelayConfigError("secret", "the relay needs a shared secret; to relay for anyone without one, say so: open (RELAY_OPEN=true, ferry relay --open)");
  }

  const secretHeader = (config.secretHeader || DEFAULT_SECRET_HEADER).toLowerCase();
  if (!HEADER_NAME.test(secretHeader)) throw new RelayConfigError("secretHeader", `"${secretHeader}" is not a header name`);

  const timeout = config.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0) throw new RelayConfigError("upstreamTimeoutMs", "must be a positive number");

  return {
    registries,
    defaultRegistry,
    secret: config.secret || undefined,
    secretHeader,
    allowPrivateRedirects: config.allowPrivateRedirects ?? false,
    publicUrl: config.publicUrl ? httpUrl("publicUrl", config.publicUrl).origin : undefined,
    upstreamTimeoutMs: timeout,
  };
}

function parseBoolean(key: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const v = value.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new RelayConfigError(key, `"${value}" is not a boolean`);
}

/**
 * Reads the relay's settings from Workers vars or process.env:
 *   RELAY_REGISTRIES="docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io"
 *     (comma or whitespace separated; default: Docker Hub only)
 *   RELAY_DEFAULT_REGISTRY, RELAY_SECRET (required unless RELAY_OPEN=true), RELAY_SECRET_HEADER,
 *   RELAY_ALLOW_PRIVATE_REDIRECTS (true/false), RELAY_PUBLIC_URL, RELAY_UPSTREAM_TIMEOUT_MS
 * Throws RelayConfigError naming the variable at fault.
 */
export function parseRelayConfig(env: Record<string, string | undefined>): RelayConfig {
  const registries: Record<string, RelayRegistry> = {};
  const list = env.RELAY_REGISTRIES?.trim() || DEFAULT_REGISTRIES;
  for (const entry of list.split(/[\s,]+/).filter(Boolean)) {
    const eq = entry.indexOf("=");
    if (eq <= 0 || eq === entry.length - 1) {
      throw new RelayConfigError("RELAY_REGISTRIES", `"${entry}" must look like name=https://upstream`);
    }
    const name = entry.slice(0, eq).toLowerCase();
    if (registries[name]) throw new RelayConfigError("RELAY_REGISTRIES", `"${name}" is listed twice`);
    registries[name] = { upstream: entry.slice(eq + 1) };
  }
  const timeout = env.RELAY_UPSTREAM_TIMEOUT_MS?.trim();
  if (timeout && !/^[0-9]+$/.test(timeout)) throw new RelayConfigError("RELAY_UPSTREAM_TIMEOUT_MS", `"${timeout}" is not a number of milliseconds`);

  const config: RelayConfig = {
    registries,
    defaultRegistry: env.RELAY_DEFAULT_REGISTRY?.trim() || undefined,
    secret: env.RELAY_SECRET || undefined,
    open: parseBoolean("RELAY_OPEN", env.RELAY_OPEN),
    secretHeader: env.RELAY_SECRET_HEADER?.trim() || undefined,
    allowPrivateRedirects: parseBoolean("RELAY_ALLOW_PRIVATE_REDIRECTS", env.RELAY_ALLOW_PRIVATE_REDIRECTS),
    publicUrl: env.RELAY_PUBLIC_URL?.trim() || undefined,
    upstreamTimeoutMs: timeout ? Number(timeout) : undefined,
  };
  // Fail at start-up, naming the variable, rather than on the first request.
  try {
    resolveRelayConfig(config);
  } catch (error) {
    if (error instanceof RelayConfigError) throw new RelayConfigError(envKeyFor(error.key), error.message.slice(error.key.length + 2));
    throw error;
  }
  return config;
}

function envKeyFor(key: string): string {
  if (key.startsWith("registries")) return "RELAY_REGISTRIES";
  const map: Record<string, string> = {
    defaultRegistry: "RELAY_DEFAULT_REGISTRY",
    secret: "RELAY_SECRET",
    secretHeader: "RELAY_SECRET_HEADER",
    publicUrl: "RELAY_PUBLIC_URL",
    upstreamTimeoutMs: "RELAY_UPSTREAM_TIMEOUT_MS",
  };
  return map[key] ?? key;
}
