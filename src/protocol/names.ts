// Repository names and tags per the distribution spec grammar. Everything that
// reaches a file path, an upstream URL or a store key passes through here first.

/** path-component ("/" path-component)*, each [a-z0-9]+ joined by ".", "_", "__" or "-"+. */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

export function isValidRepositoryName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  return name.split("/").every((c) => COMPONENT.test(c));
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/**
 * Docker Hub keeps official images under "library/": clients send
 * "library/nginx", people using an explicit prefix type "nginx". Both mean the same.
 */
export function withLibraryPrefix(name: string): string {
  return name.includes("/") ? name : `library/${name}`;
}

/** A repository glob: "library/*" one path component, "grafana/**" anything below, "a/b" exactly. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") {
      re += "[^/]*";
    } else {
      re += c.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${re}$`);
}
