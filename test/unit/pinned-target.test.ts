// Issue 16 items 1 and 9: where an upstream may send ferry. Redirect targets and token realms
// are resolved once by a resolver the test controls, refused on any non-public (or no)
// address, and connected to at exactly the address that was checked. Tiny Bun.serve
// listeners stand in for the registry, its CDN and its token service (loopback only).
import { afterAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { DEFAULT_USER_AGENT, type EndpointConfig } from "../../src/config/config.ts";
import { TokenCache } from "../../src/upstream/auth.ts";
import { Endpoint } from "../../src/upstream/endpoint.ts";
import { DEFAULT_HEALTH_POLICY } from "../../src/config/config.ts";
import { EndpointHealth } from "../../src/upstream/health.ts";
import { pinTarget, TargetRefused, type Resolver } from "../../src/upstream/pinned-target.ts";

const servers: Server<undefined>[] = [];
afterAll(() => {
  for (const s of servers) s.stop(true);
});

function listen(fetch: (req: Request) => Response | Promise<Response>): { port: number; seen: Request[] } {
  const seen: Request[] = [];
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => (seen.push(req), fetch(req)) });
  servers.push(s);
  return { port: s.port!, seen };
}

/** A resolver that answers from a script and counts its lookups (a rebinding DNS server). */
function scripted(answers: Record<string, string[][]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const resolve = (async (host: string) => {
    calls.push(host);
    const script = answers[host];
    if (!script) throw new Error(`ENOTFOUND ${host}`);
    return script[Math.min(calls.filter((c) => c === host).length - 1, script.length - 1)]!;
  }) as Resolver & { calls: string[] };
  resolve.calls = calls;
  return resolve;
}

function endpoint(url: string, resolve: Resolver, extra: Partial<EndpointConfig> = {}): Endpoint {
  const config: EndpointConfig = { url, timeoutMs: 5_000, stallTimeoutMs: 5_000, headers: {}, allowPrivateRedirects: false, userAgent: DEFAULT_USER_AGENT, username: "operator", password: "secret", ...extra };
  return new Endpoint(config, new TokenCache(), new EndpointHealth(DEFAULT_HEALTH_POLICY), resolve);
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return (error as Error).message;
  }
  return "no error";
}

describe("pinTarget", () => {
  test("a public name is pinned to the address it resolved to, with Host and TLS server name kept", async () => {
    const pinned = await pinTarget(new URL("https://cdn.example.test:8443/blobs/x?sig=1"), false, async () => ["93.184.216.34", "2606:4700::1"]);
    expect(pinned.url.href).toBe("https://93.184.216.34:8443/blobs/x?sig=1");
    expect(pinned.init).toEqual({ headers: { Host: "cdn.example.test:8443" }, tls: { serverName: "cdn.example.test" } });
    const v6 = await pinTarget(new URL("http://cdn.example.test/b"), false, async () => ["2606:4700::1"]);
    expect(v6.url.href).toBe("http://[2606:4700::1]/b");
    expect(v6.init).toEqual({ headers: { Host: "cdn.example.test" } });
  });

  test("any non-public address, no address, localhost, a private literal or another scheme is refused", async () => {
    const cases: [string, Resolver][] = [
      ["http://mixed.test/", async () => ["93.184.216.34", "10.1.2.3"]],
      ["http://v6.test/", async () => ["fd00::1"]],
      ["http://gone.test/", async () => Promise.reject(new Error("ENOTFOUND"))],
      ["http://empty.test/", async () => []],
      ["http://localhost:5000/", async () => ["93.184.216.34"]],
      ["http://127.0.0.1:5000/", async () => []],
      ["http://[::1]/", async () => []],
      ["http://169.254.169.254/latest/meta-data/", async () => []],
      ["ftp://files.test/x", async () => ["93.184.216.34"]],
    ];
    for (const [url, resolve] of cases) {
      const error = await pinTarget(new URL(url), false, resolve).catch((e) => e);
      expect({ url, refused: error instanceof TargetRefused }).toEqual({ url, refused: true });
    }
    // allow_private_redirects lets a private address through, still pinned.
    expect((await pinTarget(new URL("http://mixed.test/"), true, async () => ["10.1.2.3"])).url.href).toBe("http://10.1.2.3/");
  });
});

describe("Endpoint redirects and realms", () => {
  test("a redirect target is resolved once and fetched at that address, whatever a second lookup would say", async () => {
    const cdn = listen((req) => new Response(`blob for ${req.headers.get("host")}`));
    const registry = listen(() => new Response(null, { status: 307, headers: { location: `http://cdn.rebind.test:${cdn.port}/blob` } }));
    // First answer: loopback (allowed here), every later one: an address we must never reach.
    const resolve = scripted({ "cdn.rebind.test": [["127.0.0.1"], ["10.9.9.9"]] });
    const e = endpoint(`http://127.0.0.1:${registry.port}`, resolve, { allowPrivateRedirects: true });
    const r = await e.request({ method: "GET", path: "/v2/x/blobs/sha256:0" });
    expect({ status: r.status, body: await r.text() }).toEqual({ status: 200, body: `blob for cdn.rebind.test:${cdn.port}` });
    expect(resolve.calls).toEqual(["cdn.rebind.test"]);
  });

  test("a redirect to a name with a non-public or no address is refused before anything connects", async () => {
    const cdn = listen(() => new Response("should not be reached"));
    for (const [name, answer, why] of [
      ["rebind.test", ["93.184.216.34", "127.0.0.1"], "non-public address 127.0.0.1"],
      ["nowhere.test", undefined, "does not resolve"],
    ] as const) {
      const registry = listen(() => new Response(null, { status: 307, headers: { location: `http://${name}:${cdn.port}/blob` } }));
      const e = endpoint(`http://127.0.0.1:${registry.port}`, scripted(answer ? { [name]: [[...answer]] } : {}));
      expect(await failure(e.request({ method: "GET", path: "/v2/x/blobs/sha256:0" }))).toContain(why);
    }
    expect(cdn.seen.length).toBe(0);
  });

  test("a 401 from a redirect target is a failure; its challenge is neither answered nor kept", async () => {
    const realm = listen(() => Response.json({ token: "t", expires_in: 300 }));
    const cdn = listen(() => new Response("no", { status: 401, headers: { "www-authenticate": `Bearer realm="http://127.0.0.1:${realm.port}/token"` } }));
    let manifests = 0;
    const registry = listen((req) => {
      if (new URL(req.url).pathname.includes("/blobs/")) return new Response(null, { status: 307, headers: { location: `http://cdn.test:${cdn.port}/b` } });
      manifests++;
      return new Response("{}", { status: 200 });
    });
    const e = endpoint(`http://127.0.0.1:${registry.port}`, scripted({ "cdn.test": [["127.0.0.1"]] }), { allowPrivateRedirects: true });
    expect(await failure(e.request({ method: "GET", path: "/v2/x/blobs/sha256:0" }))).toContain("redirect target cdn.test");
    expect(cdn.seen.map((r) => r.headers.get("authorization"))).toEqual([null]);
    // The next request to the registry carries nothing the CDN asked for.
    const next = await e.request({ method: "GET", path: "/v2/x/manifests/1" });
    expect(next.status).toBe(200);
    expect(manifests).toBe(1);
    expect(registry.seen.every((r) => r.headers.get("authorization") === null)).toBe(true);
    expect(realm.seen.length).toBe(0);
  });

  test("a realm must be http(s) and public; one on the endpoint's own host is its own token service", async () => {
    const collector = listen(() => Response.json({ token: "t", expires_in: 300 }));
    for (const [realm, why] of [
      ["ftp://auth.test/token", "not http(s)"],
      [`http://auth.private.test:${collector.port}/token`, "non-public address 127.0.0.1"],
      [`http://localhost:${collector.port}/token`, "non-public address localhost"],
    ] as const) {
      const registry = listen(() => new Response("{}", { status: 401, headers: { "www-authenticate": `Bearer realm="${realm}",service="s"` } }));
      const e = endpoint(`http://127.0.0.1:${registry.port}`, scripted({ "auth.private.test": [["127.0.0.1"]] }));
      const message = await failure(e.request({ method: "GET", path: "/v2/x/manifests/1", repository: "x" }));
      expect({ realm, message: message.includes("realm") && message.includes(why) }).toEqual({ realm, message: true });
    }
    expect(collector.seen.length).toBe(0);
    // The registry's own host (another port): its token service gets the credentials.
    const own = listen((req) => Response.json({ token: req.headers.get("authorization") === `Basic ${btoa("operator:secret")}` ? "own" : "anon", expires_in: 300 }));
    const registry = listen((req) =>
      req.headers.get("authorization") === "Bearer own" ? new Response("{}") : new Response("{}", { status: 401, headers: { "www-authenticate": `Bearer realm="http://127.0.0.1:${own.port}/token",service="s"` } }),
    );
    const r = await endpoint(`http://127.0.0.1:${registry.port}`, scripted({})).request({ method: "GET", path: "/v2/x/manifests/1", repository: "x" });
    expect(r.status).toBe(200);
    expect(own.seen.length).toBe(1);
  });

  test("a refused realm is not kept: the registry's next challenge is heard", async () => {
    const own = listen(() => Response.json({ token: "own", expires_in: 300 }));
    let realm = "http://localhost:9/token";
    const registry = listen((req) =>
      req.headers.get("authorization") === "Bearer own" ? new Response("{}") : new Response("{}", { status: 401, headers: { "www-authenticate": `Bearer realm="${realm}",service="s"` } }),
    );
    const e = endpoint(`http://127.0.0.1:${registry.port}`, scripted({}));
    expect(await failure(e.request({ method: "GET", path: "/v2/x/manifests/1", repository: "x" }))).toContain("realm");
    realm = `http://127.0.0.1:${own.port}/token`;
    expect((await e.request({ method: "GET", path: "/v2/x/manifests/1", repository: "x" })).status).toBe(200);
  });
});
