// Issue 5, who may pull what: client auth with `docker login` against ferry's own token
// service, anonymous access per registry, allow/deny lists, and passthrough_auth where
// the upstream (a real distribution with private repositories) decides.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { skopeoCopy, startDockerd, type DockerdHandle } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT } from "../harness/oci.ts";

const STATIC_TOKEN = "ci-runner-token-0123456789abcdef";
let hub: Upstream;
let quay: Upstream;
let ferry: FerryProcess;
let dockerd: DockerdHandle;
let pub: BuiltImage;
let priv: BuiltImage;
const scratch = mkdtempSync(join(tmpdir(), "ferry-auth-"));

beforeAll(async () => {
  [hub, quay] = await Promise.all([startUpstream(), startUpstream()]);
  pub = await fiveLayer({ seed: "auth-public" });
  priv = await fiveLayer({ seed: "auth-private" });
  await hub.push(pub, "library/five:latest");
  await hub.push(pub, "library/secret-sauce:latest");
  await quay.push(pub, "org/public:1");
  await quay.push(priv, "private/app:1"); // anonymous can't pull private/* upstream; reader can
  await hub.push(priv, "private/hidden:1"); // ferry has no docker.io credentials: upstream answers 401
  const htpasswd = join(scratch, "htpasswd");
  writeFileSync(htpasswd, `alice:${(await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 4 })).replace(/^\$2b\$/, "$2y$")}\n`);
  ferry = await startFerry({
    config: [
      `[auth]\nhtpasswd = "${htpasswd}"\ntokens = ["${STATIC_TOKEN}"]\ntoken_secret = "${"s".repeat(40)}"`,
      `[[registry]]\nname = "docker.io"\nendpoints = ["${hub.url}"]\nallow_private_redirects = true\ndeny = ["library/secret*"]`,
      `[[registry]]\nname = "quay.io"\nendpoints = ["${quay.url}"]\nallow_private_redirects = true\nanonymous = true\npassthrough_auth = true`,
    ].join("\n"),
  });
  dockerd = await startDockerd({ mirrors: [] });
}, 300_000);

afterAll(async () => {
  await dockerd?.stop();
  await ferry?.stop();
  await Promise.all([hub?.stop(), quay?.stop()]);
  rmSync(scratch, { recursive: true, force: true });
});

describe("client auth", () => {
  test("/v2/ challenges with a Bearer realm on ferry itself", async () => {
    const r = await fetch(`${ferry.url}/v2/`);
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toBe(`Bearer realm="${ferry.url}/token",service="ferry"`);
    expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("UNAUTHORIZED");
  });

  test("docker login with a wrong password fails with 401; anonymous pulls are refused", async () => {
    const bad = await dockerd.login(ferry.host, "alice", "not-the-password");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/401|unauthorized/i);
    const anon = await dockerd.pull(`${ferry.host}/library/five:latest`);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toMatch(/unauthorized|authentication required/i);
    const raw = await fetch(`${ferry.url}/v2/library/five/manifests/latest`);
    expect(raw.status).toBe(401);
    expect(raw.headers.get("www-authenticate")).toContain('scope="repository:library/five:pull"');
  }, 60_000);

  test("docker login, then docker pull", async () => {
    const login = await dockerd.login(ferry.host, "alice", "wonderland");
    expect({ code: login.code, out: login.stdout.trim() }).toEqual({ code: 0, out: "Login Succeeded" });
    const pull = await dockerd.pull(`${ferry.host}/library/five:latest`);
    expect({ code: pull.code, err: pull.code ? pull.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(pull.digest).toBe(pub.manifestDigest);
  }, 60_000);

  test("a token for one repository does not open another; static tokens work as Bearer and as a password", async () => {
    const tokenRes = await fetch(`${ferry.url}/token?service=ferry&scope=repository:library/five:pull`, { headers: { Authorization: `Basic ${btoa("alice:wonderland")}` } });
    const { token } = (await tokenRes.json()) as { token: string };
    const ok = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Authorization: `Bearer ${token}`, Accept: ACCEPT } });
    expect(ok.status).toBe(200);
    const other = await fetch(`${ferry.url}/v2/grafana/other/manifests/latest`, { headers: { Authorization: `Bearer ${token}` } });
    expect(other.status).toBe(401);
    const forged = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Authorization: `Bearer ${token.slice(0, -4)}AAAA` } });
    expect(forged.status).toBe(401);
    const viaStatic = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Authorization: `Bearer ${STATIC_TOKEN}`, Accept: ACCEPT } });
    expect(viaStatic.status).toBe(200);
    const s = await skopeoCopy(`docker://${ferry.host}/library/five:latest`, `dir:${join(scratch, "static")}`, ["--src-tls-verify=false", "--src-creds", `ci:${STATIC_TOKEN}`]);
    expect({ code: s.code, err: s.code ? s.stderr : "" }).toEqual({ code: 0, err: "" });
  }, 60_000);

  test("a denied repository answers 403 DENIED and nothing is fetched upstream", async () => {
    hub.clearLog();
    const r = await fetch(`${ferry.url}/v2/library/secret-sauce/manifests/latest`, { headers: { Authorization: `Bearer ${STATIC_TOKEN}` } });
    expect(r.status).toBe(403);
    const body = (await r.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]!.code).toBe("DENIED");
    expect(body.errors[0]!.message).toContain("not allowed");
    const d = await dockerd.pull(`${ferry.host}/library/secret-sauce:latest`);
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/denied|not allowed/i);
    expect(hub.log.length).toBe(0);
  }, 60_000);

  test("the dashboard data and metrics need a login too", async () => {
    for (const path of ["/api/status", "/metrics"]) {
      expect((await fetch(`${ferry.url}${path}`)).status).toBe(401);
      expect((await fetch(`${ferry.url}${path}`, { headers: { Authorization: `Basic ${btoa("alice:wonderland")}` } })).status).toBe(200);
    }
    expect((await fetch(`${ferry.url}/healthz`)).status).toBe(200);
  });
});

describe("anonymous and passthrough registries", () => {
  test("anonymous pulls of a public repository on an anonymous registry", async () => {
    const s = await skopeoCopy(`docker://${ferry.host}/quay.io/org/public:1`, `dir:${join(scratch, "public")}`, ["--src-tls-verify=false"]);
    expect({ code: s.code, err: s.code ? s.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(s.digest).toBe(pub.manifestDigest);
  }, 60_000);

  test("an upstream 401 for a logged-in client carries ferry's own challenge (issue 15.13)", async () => {
    const r = await fetch(`${ferry.url}/v2/private/hidden/manifests/1`, { headers: { Accept: ACCEPT, Authorization: `Bearer ${STATIC_TOKEN}` } });
    expect(r.status).toBe(401);
    expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("UNAUTHORIZED");
    const challenge = r.headers.get("www-authenticate") ?? "";
    expect(challenge).toStartWith(`Bearer realm="${ferry.url}/token"`);
    expect(challenge).toContain('scope="repository:private/hidden:pull"');
  });

  test("passthrough: the owner pulls a private image with its upstream credentials; nobody else gets it from the cache", async () => {
    const owner = await skopeoCopy(`docker://${ferry.host}/quay.io/private/app:1`, `dir:${join(scratch, "private-owner")}`, ["--src-tls-verify=false", "--src-creds", "reader:readpass"]);
    expect({ code: owner.code, err: owner.code ? owner.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(owner.digest).toBe(priv.manifestDigest);
    // Now everything is cached. An anonymous client, a wrong password and a user the
    // upstream does not know are all turned away, and no blob is served to them.
    quay.clearLog();
    const anonymous = await fetch(`${ferry.url}/v2/quay.io/private/app/manifests/1`, { headers: { Accept: ACCEPT } });
    expect(anonymous.status).toBe(401);
    const blob = priv.blobs[0]!;
    const anonymousBlob = await fetch(`${ferry.url}/v2/quay.io/private/app/blobs/${blob.digest}`);
    expect(anonymousBlob.status).toBe(401);
    const wrong = await skopeoCopy(`docker://${ferry.host}/quay.io/private/app:1`, `dir:${join(scratch, "private-wrong")}`, ["--src-tls-verify=false", "--src-creds", "reader:wrong"]);
    expect(wrong.code).not.toBe(0);
    const anonSkopeo = await skopeoCopy(`docker://${ferry.host}/quay.io/private/app:1`, `dir:${join(scratch, "private-anon")}`, ["--src-tls-verify=false"]);
    expect(anonSkopeo.code).not.toBe(0);
    expect(quay.count({ server: "cdn" })).toBe(0);
    // docker login with upstream credentials works too.
    const login = await dockerd.login(ferry.host, "reader", "readpass");
    expect(login.code).toBe(0);
    const pull = await dockerd.pull(`${ferry.host}/quay.io/private/app:1`);
    expect({ code: pull.code, err: pull.code ? pull.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(pull.digest).toBe(priv.manifestDigest);
  }, 120_000);
});
