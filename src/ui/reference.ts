// Image references → the reference to pull through this mirror. Pure and import-free:
// the landing page runs the same module in the browser (served as /assets/reference.js).
//
//   nginx                        → MIRROR/library/nginx
//   nginx:1.27                   → MIRROR/library/nginx:1.27
//   ghcr.io/a/b:1                → MIRROR/ghcr.io/a/b:1
//   docker.io/library/redis@sha… → MIRROR/library/redis@sha…
//   localhost:5000/x             → error: not served by this mirror
//
// Grammar as in the distribution project's reference package: [domain/]path[:tag][@digest],
// where the first component is a domain when it has a "." or ":", is "localhost", or has
// upper-case letters (as Docker decides it).

export interface ServedRegistry {
  name: string; // "docker.io", "ghcr.io", …
  hosts: readonly string[]; // host names of this mirror that select the registry
}

export interface ParsedReference {
  domain: string; // as written, lower-cased; "docker.io" when none was written
  path: string; // repository path on that domain ("library/nginx" for Docker Hub short names)
  tag?: string;
  digest?: string;
}

export interface MirrorReference {
  ok: true;
  registry: string; // the served registry the image comes from
  repository: string; // its repository there
  tag?: string;
  digest?: string;
  /** The canonical upstream reference ("docker.io/library/nginx:1.27"). */
  upstream: string;
  /** What to pull through this mirror. */
  mirror: string;
  /** The same through the registry's host aliases of this mirror, if it has any. */
  aliases: string[];
}

export interface ReferenceProblem {
  ok: false;
  error: string;
}

export const DOCKER_HUB = "docker.io";
const DOCKER_HUB_ALIASES = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const MAX_NAME = 255;

/** Parses one image reference; a string describes what is wrong with it. */
export function parseReference(input: string): ParsedReference | string {
  let text = input.trim().replace(/^(?:(?:sudo\s+)?(?:docker|podman|nerdctl|crictl)\s+(?:image\s+)?pull\s+)/, "").replace(/^(?:docker|https?):\/\//, "").trim();
  if (text === "") return "type an image reference, like nginx:1.27 or ghcr.io/owner/image:tag";
  if (/\s/.test(text)) return "an image reference has no spaces";
  let digest: string | undefined;
  const at = text.indexOf("@");
  if (at >= 0) {
    digest = text.slice(at + 1);
    text = text.slice(0, at);
    if (!DIGEST.test(digest)) return `"${clip(digest)}" is not a digest (like sha256: and 64 hex digits)`;
    if (digest.startsWith("sha256:") && digest.length !== 7 + 64) return "a sha256 digest has 64 hex digits";
    digest = digest.toLowerCase();
  }
  let tag: string | undefined;
  const colon = text.lastIndexOf(":");
  if (colon > text.lastIndexOf("/")) {
    tag = text.slice(colon + 1);
    text = text.slice(0, colon);
    if (!TAG.test(tag)) return `"${clip(tag)}" is not a valid tag`;
  }
  const slash = text.indexOf("/");
  let domain = DOCKER_HUB;
  let path = text;
  if (slash > 0) {
    const first = text.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) return `"${clip(first)}" is not a registry host name`;
      domain = first.toLowerCase();
      path = text.slice(slash + 1);
    }
  } else if (slash === 0) {
    return "an image reference does not start with /";
  }
  if (path === "") return "the reference names no repository";
  if (path !== path.toLowerCase()) return "repository names must be lowercase";
  if (path.length > MAX_NAME || !path.split("/").every((c) => PATH_COMPONENT.test(c))) return `"${clip(path)}" is not a valid repository name`;
  if (DOCKER_HUB_ALIASES.includes(domain)) domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  return { domain, path, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) };
}

/** The host[:port] of a mirror URL ("https://mirror.example.com/" → "mirror.example.com"). */
export function mirrorHostOf(mirrorUrl: string): string {
  return mirrorUrl.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
}

/** The reference to pull `input` through the mirror at `mirrorHost`, or why there is none. */
export function toMirrorReference(input: string, mirrorHost: string, registries: readonly ServedRegistry[]): MirrorReference | ReferenceProblem {
  const parsed = parseReference(input);
  if (typeof parsed === "string") return { ok: false, error: parsed };
  let { domain, path } = parsed;
  const host = mirrorHost.toLowerCase();
  // Already a reference to this mirror: MIRROR/ghcr.io/a/b, MIRROR/library/x, or a host alias.
  const hostOnly = domain.replace(/:\d+$/, "");
  const alias = registries.find((r) => r.hosts.some((h) => h.toLowerCase() === domain || h.toLowerCase() === hostOnly));
  if (alias) {
    domain = alias.name;
  } else if (domain === host) {
    const slash = path.indexOf("/");
    const first = slash > 0 ? path.slice(0, slash) : "";
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      domain = DOCKER_HUB_ALIASES.includes(first) ? DOCKER_HUB : first;
      path = path.slice(slash + 1);
    } else {
      domain = DOCKER_HUB;
    }
    if (domain === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  }
  const registry = registries.find((r) => r.name.toLowerCase() === domain);
  if (!registry) {
    const served = registries.map((r) => r.name).join(", ");
    return { ok: false, error: `${domain} is not served by this mirror${served ? ` (it serves ${served})` : ""}` };
  }
  const suffix = `${parsed.tag !== undefined ? `:${parsed.tag}` : ""}${parsed.digest !== undefined ? `@${parsed.digest}` : ""}`;
  const prefix = registry.name === DOCKER_HUB ? "" : `${registry.name}/`;
  return {
    ok: true,
    registry: registry.name,
    repository: path,
    ...(parsed.tag !== undefined && { tag: parsed.tag }),
    ...(parsed.digest !== undefined && { digest: parsed.digest }),
    upstream: `${registry.name}/${path}${suffix}`,
    mirror: `${host}/${prefix}${path}${suffix}`,
    aliases: registry.hosts.filter((h) => h.toLowerCase() !== host).map((h) => `${h.toLowerCase()}/${path}${suffix}`),
  };
}

function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
}
