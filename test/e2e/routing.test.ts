// Issue 3, routing: one ferry serves Docker Hub, ghcr.io and quay.io stand-ins (three
// real distribution upstreams with different content under the same names) by path
// prefix, by Host header and by containerd's ?ns=, with docker, ctr and podman.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ctrPull, podmanPull, startDockerd, type DockerdHandle } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT } from "../harness/oci.ts";

const HOST_NAME = "ghcr.example.com";

let hub: Upstream;
let ghcr: Upstream;
let quay: Upstream;
let ferry: FerryProcess;
let dockerd: DockerdHandle;
const img: Record<"hub" | "ghcr" | "quay", BuiltImage> = {} as never;

function endpoint(u: Upstream): string {
  return `endpoints = ["${u.url}"]\nallow_private_redirects = true\ntimeout = "5s"`;
}

beforeAll(async () => {
  [hub, ghcr, quay] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
  img.hub = await fiveLayer({ seed: "hub" });
  img.ghcr = await fiveLayer({ seed: "ghcr" });
  img.quay = await fiveLayer({ seed: "quay" });
  await hub.push(img.hub, "library/app:1");
  await ghcr.push(img.ghcr, "library/app:1");
  await ghcr.push(img.ghcr, "owner/img:1");
  await quay.push(img.quay, "library/app:1");
  await quay.push(img.quay, "org/img:1");
  ferry = await startFerry({
    config: [
      `[[registry]]\nname = "docker.io"\n${endpoint(hub)}`,
      `[[registry]]\nname = "ghcr.io"\nhosts = ["${HOST_NAME}"]\n${endpoint(ghcr)}`,
      `[[registry]]\nname = "quay.io"\n${endpoint(quay)}`,
      `[[registry]]\nname = "gcr.io"\nenabled = false`,
    ].join("\n"),
  });
  dockerd = await startDockerd({
    mirrors: [ferry.url],
    insecureRegistries: [ferry.host, `${HOST_NAME}:${ferry.port}`],
    extraHosts: { [HOST_NAME]: "127.0.0.1" },
  });
}, 300_000);

afterAll(async () => {
  await dockerd?.stop();
  await ferry?.stop();
  await Promise.all([hub?.stop(), ghcr?.stop(), quay?.stop()]);
});

async function digestVia(path: string, headers: Record<string, string> = {}): Promise<{ status: number; digest: string | null; ns: string | null }> {
  const r = await fetch(`${ferry.url}${path}`, { headers: { Accept: ACCEPT, ...headers } });
  await r.arrayBuffer();
  return { status: r.status, digest: r.headers.get("docker-content-digest"), ns: r.headers.get("oci-namespace") };
}

describe("routing over HTTP", () => {
  test("the same name on three registries never collides", async () => {
    expect(await digestVia("/v2/library/app/manifests/1")).toMatchObject({ status: 200, digest: img.hub.manifestDigest });
    expect(await digestVia("/v2/app/manifests/1")).toMatchObject({ status: 200, digest: img.hub.manifestDigest });
    expect(await digestVia("/v2/ghcr.io/library/app/manifests/1")).toMatchObject({ status: 200, digest: img.ghcr.manifestDigest });
    expect(await digestVia("/v2/quay.io/library/app/manifests/1")).toMatchObject({ status: 200, digest: img.quay.manifestDigest });
    // And again, now from cache: still three different answers.
    expect((await digestVia("/v2/library/app/manifests/1")).digest).toBe(img.hub.manifestDigest);
    expect((await digestVia("/v2/ghcr.io/library/app/manifests/1")).digest).toBe(img.ghcr.manifestDigest);
  });

  test("?ns= picks the registry and is answered with OCI-Namespace", async () => {
    expect(await digestVia("/v2/library/app/manifests/1?ns=quay.io")).toEqual({ status: 200, digest: img.quay.manifestDigest, ns: "quay.io" });
    expect(await digestVia("/v2/owner/img/manifests/1?ns=ghcr.io")).toEqual({ status: 200, digest: img.ghcr.manifestDigest, ns: "ghcr.io" });
    expect(await digestVia("/v2/library/app/manifests/1?ns=docker.io")).toEqual({ status: 200, digest: img.hub.manifestDigest, ns: "docker.io" });
  });

  test("a Host name listed in hosts selects its registry", async () => {
    expect(await digestVia("/v2/owner/img/manifests/1", { Host: `${HOST_NAME}:${ferry.port}` })).toMatchObject({ status: 200, digest: img.ghcr.manifestDigest });
  });

  test("a registry that is not served gets NAME_UNKNOWN naming the served ones", async () => {
    for (const path of ["/v2/gcr.io/x/y/manifests/1", "/v2/x/y/manifests/1?ns=gcr.io", "/v2/evil.example.com/x/manifests/1"]) {
      const r = await fetch(ferry.url + path);
      expect(r.status).toBe(404);
      const body = (await r.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.code).toBe("NAME_UNKNOWN");
      expect(body.errors[0]!.message).toContain("served registries: docker.io, ghcr.io");
      const served = body.errors[0]!.message.split("served registries: ")[1]!.split(", ");
      expect(served).not.toContain("gcr.io");
    }
  });
});

describe("routing with real clients", () => {
  test("docker: registry-mirrors, explicit prefixes, and a Host-mapped name", async () => {
    const cases: [string, BuiltImage][] = [
      ["app:1", img.hub], // registry-mirrors (docker.io)
      [`${ferry.host}/library/app:1`, img.hub], // prefix, Docker Hub implied
      [`${ferry.host}/app:1`, img.hub], // one-component name: ferry adds library/
      [`${ferry.host}/ghcr.io/owner/img:1`, img.ghcr],
      [`${ferry.host}/quay.io/org/img:1`, img.quay],
      [`${HOST_NAME}:${ferry.port}/owner/img:1`, img.ghcr], // Host header
    ];
    for (const [ref, image] of cases) {
      const d = await dockerd.pull(ref);
      expect({ ref, code: d.code, err: d.code ? d.stderr : "", digest: d.digest }).toEqual({ ref, code: 0, err: "", digest: image.manifestDigest });
    }
  }, 240_000);

  test("ctr: one hosts.toml mirror entry per registry, all the same ferry URL (?ns=)", async () => {
    const hosts = { "docker.io": ferry.url, "ghcr.io": ferry.url, "quay.io": ferry.url };
    const cases: [string, BuiltImage, string][] = [
      ["docker.io/library/app:1", img.hub, "docker.io"],
      ["ghcr.io/owner/img:1", img.ghcr, "ghcr.io"],
      ["quay.io/org/img:1", img.quay, "quay.io"],
    ];
    for (const [ref, image, ns] of cases) {
      const c = await ctrPull({ ref, hosts });
      expect({ ref, code: c.code, err: c.code ? c.stderr.slice(-1500) : "", digest: c.digest }).toEqual({ ref, code: 0, err: "", digest: image.manifestDigest });
      expect(c.requests.every((r) => r.url.startsWith(ferry.url) && r.url.includes(`ns=${ns}`))).toBe(true);
    }
  }, 240_000);

  test("podman: registries.conf mirrors with a path prefix per registry", async () => {
    const registries = [
      { prefix: "docker.io", location: "docker.io", mirrors: [{ location: ferry.host, insecure: true }] },
      { prefix: "ghcr.io", location: "ghcr.io", mirrors: [{ location: `${ferry.host}/ghcr.io`, insecure: true }] },
      { prefix: "quay.io", location: "quay.io", mirrors: [{ location: `${ferry.host}/quay.io`, insecure: true }] },
    ];
    const cases: [string, BuiltImage][] = [
      ["docker.io/library/app:1", img.hub],
      ["ghcr.io/owner/img:1", img.ghcr],
      ["quay.io/org/img:1", img.quay],
    ];
    for (const [ref, image] of cases) {
      const p = await podmanPull({ ref, registries });
      expect({ ref, code: p.code, err: p.code ? p.stderr.slice(-1500) : "", digest: p.digest }).toEqual({ ref, code: 0, err: "", digest: image.manifestDigest });
    }
  }, 240_000);
});
