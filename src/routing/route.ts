// Request → what it asks for. Two pure steps: parse the /v2/ path into an API route,
// then decide which registry the name belongs to (?ns=, Host, path prefix, default).
import { DEFAULT_REGISTRY } from "../config/builtin-registries.ts";
import type { RegistryConfig } from "../config/config.ts";
import { looksLikeDigest, parseDigest } from "../protocol/digest.ts";
import { RegistryError } from "../protocol/errors.ts";
import { isValidRepositoryName, isValidTag, withLibraryPrefix } from "../protocol/names.ts";

export type ApiPath =
  | { kind: "base" }
  | { kind: "catalog" }
  | { kind: "manifest"; name: string; reference: string }
  | { kind: "blob"; name: string; digest: string }
  | { kind: "tags"; name: string }
  | { kind: "referrers"; name: string; digest: string }
  | { kind: "upload"; name: string };

/** Parses the part of the path after "/v2/". Names and references are validated here. */
export function parseApiPath(rest: string): ApiPath {
  if (rest === "" || rest === "/") return { kind: "base" };
  if (rest === "_catalog") return { kind: "catalog" };
  let m = /^(.+)\/blobs\/uploads(?:\/.*)?$/.exec(rest);
  if (m) return { kind: "upload", name: m[1]! };
  m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m) {
    const reference = m[2]!;
    if (looksLikeDigest(reference)) {
      if (!parseDigest(reference)) throw new RegistryError("DIGEST_INVALID", `invalid digest "${clip(reference)}"`);
    } else if (!isValidTag(reference)) {
      throw new RegistryError("TAG_INVALID", `invalid tag "${clip(reference)}"`);
    }
    return { kind: "manifest", name: m[1]!, reference };
  }
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m) {
    if (!parseDigest(m[2]!)) throw new RegistryError("DIGEST_INVALID", `invalid digest "${clip(m[2]!)}"`);
    return { kind: "blob", name: m[1]!, digest: m[2]! };
  }
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m) {
    // The spec: a referrers request for something that is not a digest is a 400.
    if (!parseDigest(m[2]!)) throw new RegistryError("DIGEST_INVALID", `invalid digest "${clip(m[2]!)}"`);
    return { kind: "referrers", name: m[1]!, digest: m[2]! };
  }
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m) return { kind: "tags", name: m[1]! };
  throw new RegistryError("NAME_UNKNOWN", `no such API path /v2/${clip(rest)}`, { status: 404 });
}

export interface RouteHints {
  host?: string | null; // Host header, port stripped by the caller or not
  ns?: string | null; // containerd's ?ns= query parameter
}

export interface RoutedName {
  registry: RegistryConfig;
  /** The repository on that registry ("library/alpine", "owner/img"). */
  repository: string;
  /** How the registry was chosen; "ns" answers get an OCI-Namespace header. */
  via: "prefix" | "ns" | "host" | "default";
}

/** Which registry and repository a client's name means. */
export function routeName(name: string, hints: RouteHints, registries: readonly RegistryConfig[]): RoutedName {
  const byName = (n: string) => registries.find((r) => r.name === n.toLowerCase());
  const slash = name.indexOf("/");
  const first = slash > 0 ? name.slice(0, slash) : "";
  const host = hints.host?.toLowerCase();
  const hostOnly = host?.replace(/:\d+$/, "");
  const byHost = host ? registries.find((r) => r.hosts.includes(host) || (hostOnly !== undefined && r.hosts.includes(hostOnly))) : undefined;
  let registry: RegistryConfig | undefined;
  let repository = name;
  let via: RoutedName["via"];
  // When ?ns= or the Host names the registry, the whole path is the repository: gcr.io has
  // repositories like "google.com/cloudsdktool/cloud-sdk" whose first part looks like a host.
  if (hints.ns) {
    registry = byName(hints.ns);
    if (!registry) throw notServed(hints.ns, registries);
    via = "ns";
  } else if (byHost) {
    registry = byHost;
    via = "host";
  } else if (first && isRegistryHost(first)) {
    registry = byName(first);
    if (!registry) throw notServed(first, registries);
    repository = name.slice(slash + 1);
    via = "prefix";
  } else {
    registry = byName(DEFAULT_REGISTRY);
    if (!registry) throw notServed(DEFAULT_REGISTRY, registries);
    via = "default";
  }
  if (!isValidRepositoryName(repository)) throw new RegistryError("NAME_INVALID", `invalid repository name "${clip(repository)}"`);
  if (registry.name === DEFAULT_REGISTRY) repository = withLibraryPrefix(repository);
  return { registry, repository, via };
}

/** A first path component that names a registry: has a dot or a port, or is localhost. */
function isRegistryHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

function notServed(name: string, registries: readonly RegistryConfig[]): RegistryError {
  return new RegistryError("NAME_UNKNOWN", `registry "${clip(name)}" is not served by this mirror; served registries: ${registries.map((r) => r.name).join(", ")}`);
}

function clip(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}…` : value;
}
