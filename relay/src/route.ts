// Request path → which registry and repository the relay talks to. Pure; every name and
// reference is validated here, with ferry's own grammar (src/protocol), before it is placed
// into an upstream URL.
import type { ResolvedRelayConfig } from "./config.ts";
import { parseDigest } from "../../src/protocol/digest.ts";
import { isValidRepositoryName, isValidTag } from "../../src/protocol/names.ts";
import { RelayError } from "./errors.ts";

export type RepoKind = "manifests" | "blobs" | "tags";

export interface RepoRequest {
  kind: RepoKind;
  /** Registry chosen (a key of config.registries). */
  registry: string;
  upstream: URL;
  /** Repository name as the upstream knows it (Docker Hub official images get "library/"). */
  name: string;
  /** Tag or digest; "list" for tags. */
  reference: string;
  /** How the client addressed this registry's API ("/v2/", "/v2/ghcr.io/", "/ghcr.io/v2/"): kept in rewritten Link headers. */
  clientApiBase: string;
  /** The ?ns= value that chose the registry, if that is how it was chosen. */
  ns: string | undefined;
}

const isValidDigest = (digest: string): boolean => parseDigest(digest) !== undefined;

/** Docker's rule for "is the first component a registry host": it has a dot or a port, or is localhost. */
function looksLikeHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

/**
 * Where the registry API starts in a request path. Besides "/v2/…", the relay accepts a
 * registry mounted in front of it, "/ghcr.io/v2/…": an endpoint URL with a path
 * (https://relay.example.workers.dev/ghcr.io) is how ferry, or containerd with override_path,
 * points one registry at the relay without touching repository names.
 */
export interface Mount {
  /** "" or "/ghcr.io": what the client put before /v2. */
  base: string;
  /** The registry the mount names, if any. */
  registry: string | undefined;
  /** The path from /v2 on. */
  apiPath: string;
}

export function parseMount(config: ResolvedRelayConfig, pathname: string): Mount {
  const m = /^\/([^/]+)(\/v2(?:\/.*)?)$/.exec(pathname);
  if (!m || m[1] === "v2") return { base: "", registry: undefined, apiPath: pathname };
  const registry = m[1]!.toLowerCase();
  if (!config.registries.has(registry)) throw new RelayError(404, "NAME_UNKNOWN", `registry "${registry}" is not served by this relay`);
  return { base: `/${registry}`, registry, apiPath: m[2]! };
}

/**
 * The registry for a request: a mount or path prefix naming a configured registry wins, then
 * ?ns= (containerd's mirror parameter), then the default. One naming a registry the relay
 * does not serve is NAME_UNKNOWN — never silently the default, which would serve another image.
 */
export function selectRegistry(
  config: ResolvedRelayConfig,
  mount: Mount,
  ns: string | null,
): { registry: string; upstream: URL } | undefined {
  const registry = mount.registry ?? (ns ? ns.toLowerCase() : config.defaultRegistry);
  if (registry === undefined) return undefined;
  const upstream = config.registries.get(registry);
  if (!upstream) throw new RelayError(404, "NAME_UNKNOWN", `registry "${registry}" is not served by this relay`);
  return { registry, upstream };
}

const REPO_PATH = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;
const TAGS_PATH = /^\/v2\/(.+)\/tags\/list$/;

/** Parses …/v2/<name>/(manifests|blobs)/<ref> and …/v2/<name>/tags/list; undefined for other paths. */
export function parseRepoRequest(config: ResolvedRelayConfig, mount: Mount, ns: string | null): RepoRequest | undefined {
  let kind: RepoKind;
  let fullName: string;
  let reference: string;
  const repo = REPO_PATH.exec(mount.apiPath);
  const tags = TAGS_PATH.exec(mount.apiPath);
  if (repo) {
    kind = repo[2] as RepoKind;
    fullName = repo[1]!;
    reference = repo[3]!;
  } else if (tags) {
    kind = "tags";
    fullName = tags[1]!;
    reference = "list";
  } else {
    return undefined;
  }

  let name = fullName;
  let prefix: string | undefined;
  let chosen: { registry: string; upstream: URL } | undefined;
  const slash = fullName.indexOf("/");
  const first = slash > 0 ? fullName.slice(0, slash) : "";
  if (!mount.registry && first && looksLikeHost(first)) {
    const upstream = config.registries.get(first);
    if (!upstream) throw new RelayError(404, "NAME_UNKNOWN", `registry "${first}" is not served by this relay`);
    chosen = { registry: first, upstream };
    prefix = first;
    name = fullName.slice(slash + 1);
  } else {
    chosen = selectRegistry(config, mount, ns);
    if (!chosen) throw new RelayError(404, "NAME_UNKNOWN", "no registry in the path or ?ns=, and the relay has no default registry");
  }

  if (!isValidRepositoryName(name)) throw new RelayError(400, "NAME_INVALID", `invalid repository name "${name}"`);
  if (kind === "blobs" && !isValidDigest(reference)) throw new RelayError(400, "DIGEST_INVALID", `invalid digest "${reference}"`);
  if (kind === "manifests" && !isValidDigest(reference) && !isValidTag(reference)) {
    throw new RelayError(400, reference.includes(":") ? "DIGEST_INVALID" : "TAG_INVALID", `invalid reference "${reference}"`);
  }
  // Docker Hub keeps official images under library/; users of a prefix type "nginx".
  if (chosen.registry === "docker.io" && !name.includes("/")) name = `library/${name}`;

  return {
    kind,
    registry: chosen.registry,
    upstream: chosen.upstream,
    name,
    reference,
    clientApiBase: `${mount.base}/v2/${prefix ? `${prefix}/` : ""}`,
    ns: !mount.registry && prefix === undefined && ns ? chosen.registry : undefined,
  };
}
