// The upstream token cache and token fetch (auth.ts): one fetch for concurrent callers,
// reuse until shortly before expiry, no caching of failures, and the token request as a
// registry's token service sees it (a tiny in-process token server; e2e tests use the
// harness's real token flow).
import { afterEach, describe, expect, test } from "bun:test";
import { DEFAULT_USER_AGENT } from "../../src/config/config.ts";
import { fetchToken, TokenCache, TokenFetchError, tokenCacheKey, type Token } from "../../src/upstream/auth.ts";

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

function tokenServer(answer: (req: Request) => Response | Promise<Response>) {
  const seen: { url: URL; headers: Headers }[] = [];
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (req) => (seen.push({ url: new URL(req.url), headers: new Headers(req.headers) }), answer(req)) });
  stops.push(() => server.stop(true));
  return { realm: `http://127.0.0.1:${server.port}/token`, seen };
}

const challenge = (realm: string) => ({ scheme: "bearer" as const, params: { realm, service: "tiny" } });
const via = { timeoutMs: 2_000, userAgent: DEFAULT_USER_AGENT };

describe("TokenCache", () => {
  test("concurrent callers share one fetch; the token is reused while valid", async () => {
    const cache = new TokenCache();
    let fetches = 0;
    let finish!: (t: Token) => void;
    const fetcher = () => (fetches++, new Promise<Token>((r) => (finish = r)));
    const all = Promise.all([cache.get("k", fetcher), cache.get("k", fetcher), cache.get("k", fetcher)]);
    finish({ value: "t1", expiresAt: Date.now() + 60_000 });
    expect((await all).map((t) => t.value)).toEqual(["t1", "t1", "t1"]);
    expect((await cache.get("k", fetcher)).value).toBe("t1");
    expect(fetches).toBe(1);
  });

  test("an expired token is fetched again; fresh=true always fetches", async () => {
    const cache = new TokenCache();
    const tokens = [
      { value: "old", expiresAt: Date.now() - 1 },
      { value: "new", expiresAt: Date.now() + 60_000 },
      { value: "forced", expiresAt: Date.now() + 60_000 },
    ];
    const fetcher = async () => tokens.shift()!;
    expect((await cache.get("k", fetcher)).value).toBe("old");
    expect((await cache.get("k", fetcher)).value).toBe("new");
    expect((await cache.get("k", fetcher, true)).value).toBe("forced");
  });

  test("a failed fetch is not cached: the next caller fetches again", async () => {
    const cache = new TokenCache();
    let calls = 0;
    const fetcher = async (): Promise<Token> => {
      if (calls++ === 0) throw new TokenFetchError("down");
      return { value: "ok", expiresAt: Date.now() + 60_000 };
    };
    await expect(cache.get("k", fetcher)).rejects.toThrow("down");
    expect((await cache.get("k", fetcher)).value).toBe("ok");
  });

  test("keys differ per credential: a wrong password never reuses a right one's token", () => {
    const c = challenge("http://x/token");
    expect(tokenCacheKey(c, "repository:a:pull", { username: "u", password: "right" })).not.toBe(tokenCacheKey(c, "repository:a:pull", { username: "u", password: "wrong" }));
    expect(tokenCacheKey(c, "repository:a:pull")).not.toBe(tokenCacheKey(c, "repository:b:pull"));
  });
});

describe("fetchToken", () => {
  test("asks the realm with service, scope, Basic credentials and ferry's User-Agent; expires_in with a margin", async () => {
    const t = tokenServer(() => Response.json({ token: "abc", expires_in: 300 }));
    const before = Date.now();
    const token = await fetchToken(challenge(t.realm), "repository:library/alpine:pull", { username: "u", password: "p" }, via);
    expect(token.value).toBe("abc");
    expect(token.expiresAt).toBeGreaterThanOrEqual(before + 290_000);
    expect(token.expiresAt).toBeLessThanOrEqual(Date.now() + 290_000);
    const req = t.seen[0]!;
    const url = req.url;
    expect({ service: url.searchParams.get("service"), scope: url.searchParams.get("scope"), auth: req.headers.get("authorization"), ua: req.headers.get("user-agent") }).toEqual({
      service: "tiny",
      scope: "repository:library/alpine:pull",
      auth: `Basic ${btoa("u:p")}`,
      ua: DEFAULT_USER_AGENT,
    });
  });

  test("without expires_in a token lives 60 s (Docker's default), access_token accepted", async () => {
    const t = tokenServer(() => Response.json({ access_token: "xyz" }));
    const token = await fetchToken(challenge(t.realm), "s", undefined, via);
    expect(token.value).toBe("xyz");
    expect(token.expiresAt - Date.now()).toBeLessThanOrEqual(50_000);
    expect(token.expiresAt - Date.now()).toBeGreaterThan(40_000);
  });

  test("a JSON 401 is the token service's verdict (status kept); an HTML 403 page is not", async () => {
    const json = tokenServer(() => Response.json({ errors: [{ code: "UNAUTHORIZED" }] }, { status: 401 }));
    const e1 = await fetchToken(challenge(json.realm), "s", undefined, via).catch((e: TokenFetchError) => e);
    expect((e1 as TokenFetchError).status).toBe(401);
    const html = tokenServer(() => new Response("<html>Just a moment...</html>", { status: 403, headers: { "Content-Type": "text/html" } }));
    const e2 = await fetchToken(challenge(html.realm), "s", undefined, via).catch((e: TokenFetchError) => e);
    expect(e2).toBeInstanceOf(TokenFetchError);
    expect((e2 as TokenFetchError).status).toBeUndefined();
  });

  test("a token body that stalls after its headers ends at the request's deadline", async () => {
    const t = tokenServer(() => new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('{"tok')) }), { headers: { "Content-Type": "application/json" } }));
    const deadline = new AbortController();
    const pending = fetchToken(challenge(t.realm), "s", undefined, { ...via, signal: deadline.signal }).catch((e: Error) => e);
    await Promise.resolve();
    deadline.abort();
    const e = await pending;
    expect(e).toBeInstanceOf(TokenFetchError);
    expect((e as TokenFetchError).status).toBeUndefined();
  });
});
