// WWW-Authenticate challenges (RFC 7235), as registries send them:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"

export interface Challenge {
  scheme: string; // lower-case: "bearer", "basic"
  params: Record<string, string>; // keys lower-case
}

/** Parses one header value that may hold several challenges. */
export function parseChallenges(header: string | null | undefined): Challenge[] {
  if (!header) return [];
  const challenges: Challenge[] = [];
  let i = 0;
  const s = header;
  const skip = (re: RegExp) => {
    while (i < s.length && re.test(s[i]!)) i++;
  };
  while (i < s.length) {
    skip(/[\s,]/);
    const schemeStart = i;
    skip(/[^\s,=]/);
    if (i === schemeStart) break;
    const scheme = s.slice(schemeStart, i).toLowerCase();
    const params: Record<string, string> = {};
    // Parameters follow until the next bare token (a new scheme).
    for (;;) {
      skip(/[\s,]/);
      const keyStart = i;
      skip(/[^\s,=]/);
      const key = s.slice(keyStart, i);
      skip(/\s/);
      if (s[i] !== "=" || key === "") {
        i = keyStart; // not a parameter: it is the next challenge's scheme
        break;
      }
      i++; // "="
      skip(/\s/);
      let value = "";
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === "\\" && i + 1 < s.length) i++;
          value += s[i++];
        }
        i++; // closing quote
      } else {
        const valueStart = i;
        skip(/[^\s,]/);
        value = s.slice(valueStart, i);
      }
      params[key.toLowerCase()] = value;
      if (i >= s.length) break;
    }
    challenges.push({ scheme, params });
  }
  return challenges;
}

export function formatBearerChallenge(params: Record<string, string>): string {
  return formatChallenges([{ scheme: "bearer", params }]);
}

/** Challenges back into one header value; parameters keep their order. */
export function formatChallenges(challenges: Challenge[]): string {
  return challenges
    .map((c) => {
      const scheme = c.scheme.charAt(0).toUpperCase() + c.scheme.slice(1);
      const parts = Object.entries(c.params).map(([k, v]) => `${k}="${v.replace(/(["\\])/g, "\\$1")}"`);
      return parts.length ? `${scheme} ${parts.join(",")}` : scheme;
    })
    .join(", ");
}
