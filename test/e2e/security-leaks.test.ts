// Issue 16, the leaks: upstream credentials sent to a realm a redirect target (or a hostile
// upstream) names, private layers served across repositories under passthrough_auth, and
// passthrough falling back to the operator's credentials. The upstream is the harness's real
// distribution with token auth (private/* needs a login); the hostile parts are small
// Bun.serve listeners in front of it that record what reaches them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { skopeoCopy } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, sha256 } from "../harness/oci.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

// A loopback address other than the harness's 127.0.0.1, so a realm there is another host.
const ELSEWHERE = "127.0.0.2";
const OFF = ["gcr.io", "k8s.gcr.io", "registry.k8s.io", "mcr.microsoft.com", "docker.elastic.co", "nvcr.io"].map((n) => `[[registry]]\nname = "${n}"\nenabled = false`).join("\n");

interface Seen {
  server: string;
  method: string;
  path: string;
  authorization: string | null;
}

let hub: Upstream; // quay.io (passthrough) and, through the hostile front, docker.io
let hub2: Upstream; // a second passthrough registry that does not know `reader`
let ferry: FerryProcess;
let pub: BuiltImage;
let priv: BuiltImage;
const seen: Seen[] = [];
const servers: Server<undefined>[] = [];
const scratch = mkdtempSync(join(tmpdir(), "ferry-leaks-"));
const basic = (user: string, pass: string) => `Basic ${btoa(`${user}:${pass}`)}`;
const READER = basic("reader", "readpass");

function record(server: string, req: Request): void {
  const url = new URL(req.url);
  seen.push({ server, method: req.method, path: url.pathname + url.search, authorization: req.headers.get("authorization") });
}

function listen(hostname: string, fetch: (req: Request) => Response | Promise<Response>): Server<undefined> {
  const s = Bun.serve({ hostname, port: 0, fetch });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  [hub, hub2] = await Promise.all([startUpstream(), startUpstream({ users: { pusher: { password: "pushpass", push: true } } })]);
  pub = await fiveLayer({ seed: "leaks-public" });
  priv = await fiveLayer({ seed: "leaks-private" });
  await hub.push(pub, "library/five:latest");
  await hub.push(pub, "org/public:1");
  await hub.push(pub, "private/copy:1"); // the public image's layers, in a private repository too
  await hub.push(priv, "private/app:1");
  await hub.push(priv, "private/tagged:a");
  await hub.push(priv, "private/tagged:b");

  // Where a hostile party wants ferry's credentials to go: records and hands out a token.
  const collector = listen(ELSEWHERE, (req) => {
    record("collector", req);
    return Response.json({ token: "stolen", expires_in: 300 });
  });
  const realm = `http://${ELSEWHERE}:${collector.port}/token`;
  // A CDN the registry redirects blobs to, which answers 401 with a realm of its own.
  const cdn = listen(ELSEWHERE, (req) => {
    record("cdn", req);
    return new Response(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "cdn wants a login" }] }), {
      status: 401,
      headers: { "content-type": "application/json", "www-authenticate": `Bearer realm="${realm}",service="cdn"` },
    });
  });
  // The harness registry behind a front that sends blob redirects to that CDN.
  const cdnFront = listen("127.0.0.1", async (req) => {
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    headers.delete("host");
    const r = await fetch(`${hub.url}${url.pathname}${url.search}`, { method: req.method, headers, redirect: "manual", decompress: false });
    if (r.status === 307 && /\/blobs\//.test(url.pathname)) {
      await r.body?.cancel();
      return new Response(null, { status: 307, headers: { location: `http://${ELSEWHERE}:${cdn.port}${url.pathname}` } });
    }
    return new Response(req.method === "HEAD" ? null : r.body, { status: r.status, headers: r.headers });
  });
  // A registry whose own challenge names a realm on a private address.
  const realmFront = listen("127.0.0.1", (req) => {
    record("realm-front", req);
    return new Response(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "login" }] }), {
      status: 401,
      headers: { "content-type": "application/json", "www-authenticate": `Bearer realm="${realm}",service="registry.test"` },
    });
  });

  const htpasswd = join(scratch, "htpasswd");
  writeFileSync(htpasswd, `alice:${(await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 4 })).replace(/^\$2b\$/, "$2y$")}\n`);
  ferry = await startFerry({
    config: [
      `[auth]\nhtpasswd = "${htpasswd}"\ntoken_secret = "${"s".repeat(40)}"`,
      // The operator's own upstream account on two ordinary (not passthrough) registries.
      `[[registry]]\nname = "docker.io"\nendpoints = ["http://127.0.0.1:${cdnFront.port}"]\nusername = "reader"\npassword = "readpass"\nallow_private_redirects = true\nanonymous = true`,
      `[[registry]]\nname = "ghcr.io"\nendpoints = ["http://127.0.0.1:${realmFront.port}"]\nusername = "reader"\npassword = "readpass"\nanonymous = true`,
      `[[registry]]\nname = "quay.io"\nendpoints = ["${hub.url}"]\nallow_private_redirects = true\nanonymous = true\npassthrough_auth = true`,
      `[[registry]]\nname = "example.test"\nendpoints = ["${hub2.url}"]\nallow_private_redirects = true\nanonymous = true\npassthrough_auth = true`,
      OFF,
    ].join("\n"),
  });
}, 300_000);

afterAll(async () => {
  await ferry?.stop();
  for (const s of servers) await s.stop(true);
  await Promise.all([hub?.stop(), hub2?.stop()]);
  rmSync(scratch, { recursive: true, force: true });
});

async function errorOf(r: Response): Promise<{ status: number; code?: string; message?: string }> {
  const body = (await r.json().catch(() => ({}))) as { errors?: { code: string; message: string }[] };
  return { status: r.status, code: body.errors?.[0]?.code, message: body.errors?.[0]?.message };
}

describe("upstream credentials stay with the registry", () => {
  test("a 401 from a redirect target is that hop's failure: its realm never sees the endpoint's credentials", async () => {
    const manifest = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } });
    expect(manifest.status).toBe(200);
    const layer = pub.manifests[0]!.layers[0]!.digest;
    const blob = await fetch(`${ferry.url}/v2/library/five/blobs/${layer}`);
    const failed = await errorOf(blob);
    // The CDN was asked (without credentials) and its realm never at all.
    const atCdn = seen.filter((s) => s.server === "cdn");
    expect(atCdn.length).toBeGreaterThan(0);
    expect(atCdn.every((s) => s.authorization === null)).toBe(true);
    expect(seen.filter((s) => s.server === "collector")).toEqual([]);
    expect(failed.status).toBe(503);
    expect(failed.code).toBe("UNAVAILABLE");
    expect(failed.message).toContain("401");
    // The registry's own challenge still holds: the next manifest goes through its token server.
    hub.clearLog();
    const again = await fetch(`${ferry.url}/v2/org/public/manifests/1`, { headers: { Accept: ACCEPT } });
    expect(again.status).toBe(200);
    expect(hub.entries({ server: "token" }).map((e) => e.headers.authorization)).toEqual([true]);
    expect(seen.filter((s) => s.server === "collector")).toEqual([]);
  }, 60_000);

  test("a realm on a private address is refused unless allow_private_redirects", async () => {
    const r = await fetch(`${ferry.url}/v2/ghcr.io/org/app/manifests/1`, { headers: { Accept: ACCEPT } });
    const failed = await errorOf(r);
    expect(seen.filter((s) => s.server === "realm-front").length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.server === "collector")).toEqual([]);
    expect(failed.status).toBe(503);
    expect(failed.message).toContain("realm");
  }, 60_000);
});

describe("passthrough_auth: a private layer stays in its repository", () => {
  test("a private layer asked under a public repository is unknown; its owner gets it under its own", async () => {
    const owner = await skopeoCopy(`docker://${ferry.host}/quay.io/private/app:1`, `dir:${join(scratch, "owner")}`, ["--src-creds", "reader:readpass"]);
    expect({ code: owner.code, err: owner.code ? owner.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(owner.digest).toBe(priv.manifestDigest);
    const layer = priv.manifests[0]!.layers[0]!.digest;
    hub.clearLog();
    // Anonymous may read org/public, and the layer is cached: still not served there.
    const anonymous = await fetch(`${ferry.url}/v2/quay.io/org/public/blobs/${layer}`);
    expect(await errorOf(anonymous)).toMatchObject({ status: 404, code: "BLOB_UNKNOWN" });
    const anonymousHead = await fetch(`${ferry.url}/v2/quay.io/org/public/blobs/${layer}`, { method: "HEAD" });
    expect(anonymousHead.status).toBe(404);
    expect(hub.count({ server: "cdn" })).toBe(0);
    // Under its own repository: the owner gets the bytes from the cache, anonymous a challenge.
    const mine = await fetch(`${ferry.url}/v2/quay.io/private/app/blobs/${layer}`, { headers: { Authorization: READER } });
    expect(mine.status).toBe(200);
    expect(mine.headers.get("x-ferry-cache")).toBe("hit");
    expect(sha256(await mine.arrayBuffer())).toBe(layer);
    expect((await fetch(`${ferry.url}/v2/quay.io/private/app/blobs/${layer}`)).status).toBe(401);
    // Under the public repository the owner sees what the upstream itself says there: unknown.
    const token = await hub.token("repository:org/public:pull", { username: "reader", password: "readpass" });
    const upstreamSays = await fetch(`${hub.registryUrl}/v2/org/public/blobs/${layer}`, { method: "HEAD", headers: { Authorization: `Bearer ${token}` } });
    expect(upstreamSays.status).toBe(404);
    const ownerElsewhere = await fetch(`${ferry.url}/v2/quay.io/org/public/blobs/${layer}`, { headers: { Authorization: READER } });
    expect(await errorOf(ownerElsewhere)).toMatchObject({ status: 404, code: "BLOB_UNKNOWN" });
    expect(hub.count({ server: "cdn" })).toBe(0);
  }, 120_000);

  test("a layer the upstream confirms in a public repository is served from the cache", async () => {
    const copy = await skopeoCopy(`docker://${ferry.host}/quay.io/private/copy:1`, `dir:${join(scratch, "copy")}`, ["--src-creds", "reader:readpass"]);
    expect(copy.code).toBe(0);
    const layer = pub.manifests[0]!.layers[1]!.digest;
    hub.clearLog();
    const r = await fetch(`${ferry.url}/v2/quay.io/org/public/blobs/${layer}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("x-ferry-cache")).toBe("hit");
    expect(sha256(await r.arrayBuffer())).toBe(layer);
    // One anonymous HEAD in org/public confirmed it; the bytes came from the cache.
    expect(hub.count({ server: "front", method: "HEAD", pathIncludes: `/v2/org/public/blobs/${layer}` })).toBe(1);
    expect(hub.entries({ server: "token" }).every((e) => !e.headers.authorization)).toBe(true);
    expect(hub.count({ server: "cdn" })).toBe(0);
    // Once a manifest of the repository names a layer, no upstream check is needed.
    const m = await fetch(`${ferry.url}/v2/quay.io/org/public/manifests/1`, { headers: { Accept: ACCEPT } });
    expect(m.status).toBe(200);
    hub.clearLog();
    const other = pub.manifests[0]!.layers[2]!.digest;
    const cached = await fetch(`${ferry.url}/v2/quay.io/org/public/blobs/${other}`);
    expect(cached.status).toBe(200);
    expect(sha256(await cached.arrayBuffer())).toBe(other);
    expect(hub.count({ pathIncludes: "/blobs/" })).toBe(0);
  }, 120_000);
});

describe("passthrough_auth: exactly the client's upstream rights", () => {
  test("tags/list of a private repository carries the client's own credentials", async () => {
    const r = await fetch(`${ferry.url}/v2/quay.io/private/tagged/tags/list`, { headers: { Authorization: READER } });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ name: "quay.io/private/tagged", tags: ["a", "b"] });
    expect((await fetch(`${ferry.url}/v2/quay.io/private/tagged/tags/list`)).status).toBe(401);
  }, 60_000);

  test("htpasswd and anonymous clients are checked upstream anonymously, with no credentials of anyone's", async () => {
    hub.clearLog();
    const r = await fetch(`${ferry.url}/v2/quay.io/private/copy/manifests/1`, { headers: { Authorization: basic("alice", "wonderland"), Accept: ACCEPT } });
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toContain('scope="repository:quay.io/private/copy:pull"');
    expect(hub.count({ server: "token" })).toBeGreaterThan(0);
    expect(hub.entries({ server: "token" }).every((e) => !e.headers.authorization)).toBe(true);
    expect((await fetch(`${ferry.url}/v2/quay.io/private/copy/manifests/1`, { headers: { Accept: ACCEPT } })).status).toBe(401);
  }, 60_000);

  test("docker login without a scope is accepted when one passthrough registry accepts it; a scope names the registry that decides", async () => {
    // What `docker login MIRROR` sends after the /v2/ challenge.
    const login = await fetch(`${ferry.url}/token?account=reader&client_id=docker&offline_token=true&service=ferry`, { headers: { Authorization: READER } });
    expect(login.status).toBe(200);
    expect(((await login.json()) as { token?: string }).token).toBeString();
    const here = await fetch(`${ferry.url}/token?service=ferry&scope=repository:quay.io/private/app:pull`, { headers: { Authorization: READER } });
    expect(here.status).toBe(200);
    const there = await fetch(`${ferry.url}/token?service=ferry&scope=repository:example.test/org/app:pull`, { headers: { Authorization: READER } });
    expect(there.status).toBe(401);
    const nobody = await fetch(`${ferry.url}/token?account=mallory&service=ferry`, { headers: { Authorization: basic("mallory", "guess") } });
    expect(nobody.status).toBe(401);
  }, 60_000);

  test("the operator's credentials on a passthrough registry are refused at start, naming the key", async () => {
    const config = `[auth]\ntokens = ["${"t".repeat(20)}"]\n[[registry]]\nname = "quay.io"\nendpoints = ["${hub.url}"]\nusername = "reader"\npassword = "readpass"\nanonymous = true\npassthrough_auth = true`;
    let error = "";
    try {
      const started = await startFerry({ config });
      await started.stop();
    } catch (e) {
      error = (e as Error).message;
    }
    expect(error).toContain("registry[0].username");
  }, 60_000);
});
