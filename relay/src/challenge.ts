// WWW-Authenticate challenges (RFC 7235) as registries send them:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"
// The relay parses them to swap the realm for its own /token, and formats them back.

export interface Challenge {
  scheme: string; // as sent, e.g. "Bearer"
  params: Array<[string, string]>; // keys lower-case, in order
}

/** Parses a header value that may hold several challenges. */
export function parseChallenges(header: string | null): Challenge[] {
  const s = header ?? "";
  const challenges: Challenge[] = [];
  let i = 0;
  const skip = (re: RegExp) => {
    while (i < s.length && re.test(s[i]!)) i++;
  };
  while (i < s.length) {
    skip(/[\s,]/);
    const schemeStart = i;
    skip(/[^\s,=]/);
    if (i === schemeStart) break;
    const challenge: Challenge = { scheme: s.slice(schemeStart, i), params: [] };
    for (;;) {
      skip(/[\s,]/);
      const keyStart = i;
      skip(/[^\s,=]/);
      const key = s.slice(keyStart, i);
      skip(/\s/);
      if (s[i] !== "=" || key === "") {
        i = keyStart; // a bare token: the next challenge's scheme
        break;
      }
      i++;
      skip(/\s/);
      let value = "";
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === "\\" && i + 1 < s.length) i++;
          value += s[i++];
        }
        i++;
      } else {
        const valueStart = i;
        skip(/[^\s,]/);
        value = s.slice(valueStart, i);
      }
      challenge.params.push([key.toLowerCase(), value]);
      if (i >= s.length) break;
    }
    challenges.push(challenge);
  }
  return challenges;
}

export function param(challenge: Challenge, key: string): string | undefined {
  return challenge.params.find(([k]) => k === key)?.[1];
}

export function formatChallenges(challenges: Challenge[]): string {
  return challenges
    .map((c) => {
      const params = c.params.map(([k, v]) => `${k}="${v.replace(/(["\\])/g, "\\$1")}"`).join(",");
      return params ? `${c.scheme} ${params}` : c.scheme;
    })
    .join(", ");
}

export function isBearer(challenge: Challenge): boolean {
  return challenge.scheme.toLowerCase() === "bearer";
}
