// Image references ([domain/]path[:tag][@digest]) as Docker reads them: the grammar of the
// distribution project's reference package, where the first component is a domain when it
// has a "." or ":", is "localhost", or has upper-case letters. Pure and import-free: the
// landing page runs it in the browser, `ferry warm` and `ferry check` on the command line.

export interface ParsedReference {
  domain: string; // as written, lower-cased; "docker.io" when none was written
  path: string; // repository path on that domain ("library/nginx" for Docker Hub short names)
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = "docker.io";
export const DOCKER_HUB_ALIASES = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

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

function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
}
