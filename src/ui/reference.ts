// Image references → the reference to pull through this mirror. Pure and import-free but
// for the parser (src/protocol/image-reference.ts): the landing page runs the same module in
// the browser (bundled into /assets/landing-client.js).
//
//   nginx                        → MIRROR/library/nginx
//   nginx:1.27                   → MIRROR/library/nginx:1.27
//   ghcr.io/a/b:1                → MIRROR/ghcr.io/a/b:1
//   docker.io/library/redis@sha… → MIRROR/library/redis@sha…
//   localhost:5000/x             → error: not served by this mirror
import { DOCKER_HUB, DOCKER_HUB_ALIASES, parseReference } from "../protocol/image-reference.ts";

export interface ServedRegistry {
  name: string; // "docker.io", "ghcr.io", …
  hosts: readonly string[]; // host names of this mirror that select the registry
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
