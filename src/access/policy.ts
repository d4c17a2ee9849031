// Which repositories of a registry may be pulled (allow/deny globs) and which clients
// are turned away outright (User-Agent block list).
//   "library/*"  one path component;  "grafana/**"  anything below;  "a/b"  exactly.

import { globToRegExp } from "../protocol/names.ts";

export class RepositoryPolicy {
  private readonly allow: RegExp[];
  private readonly deny: RegExp[];

  constructor(allow: string[], deny: string[]) {
    this.allow = allow.map(globToRegExp);
    this.deny = deny.map(globToRegExp);
  }

  /** Deny wins; with an allow list, only what it matches is allowed. */
  allows(repository: string): boolean {
    if (this.deny.some((re) => re.test(repository))) return false;
    return this.allow.length === 0 || this.allow.some((re) => re.test(repository));
  }
}

export function userAgentBlocker(patterns: string[]): (userAgent: string | null) => boolean {
  const res = patterns.map((p) => new RegExp(p, "i"));
  return (ua) => res.length > 0 && res.some((re) => re.test(ua ?? ""));
}
