// Issue 2, with real clients: skopeo, podman (registries.conf mirror), containerd's ctr
// (hosts.toml mirror) and dockerd (daemon.json registry-mirrors) pull through ferry from
// a real distribution upstream; every pulled digest is checked. Then the upstream is
// stopped and every pull succeeds again from ferry's cache.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ctrPull, podmanPull, skopeoCopy, startDockerd, type DockerdHandle } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, multiArch, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let ferry: FerryProcess;
let dockerd: DockerdHandle;
let images: { multi: BuiltImage; multiDocker: BuiltImage; five: BuiltImage; big: BuiltImage; fanIn: BuiltImage };
const scratch = mkdtempSync(join(tmpdir(), "ferry-clients-"));

beforeAll(async () => {
  upstream = await startUpstream();
  images = {
    multi: await multiArch(),
    multiDocker: await multiArch({ format: "docker" }),
    five: await fiveLayer(),
    big: await bigLayer(),
    fanIn: await fiveLayer({ seed: "fan-in" }),
  };
  await upstream.push(images.multi, "library/multi:latest");
  await upstream.push(images.multiDocker, "library/multidocker:latest");
  await upstream.push(images.five, "library/five:latest");
  await upstream.push(images.five, "grafana/five:12.0.0");
  await upstream.push(images.big, "library/big:latest");
  await upstream.push(images.fanIn, "library/fanin:latest");
  ferry = await startFerry({
    config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\ntimeout = "5s"\n`,
  });
  dockerd = await startDockerd({ mirrors: [ferry.url] });
}, 300_000);

afterAll(async () => {
  await dockerd?.stop();
  await ferry?.stop();
  await upstream?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

const mirrorFor = () => ({ "docker.io": ferry.url });
const podmanRegistries = () => [{ prefix: "docker.io", location: "docker.io", mirrors: [{ location: ferry.host, insecure: true }] }];

async function pullAll(round: string): Promise<void> {
  // skopeo: every platform of the OCI index, by explicit mirror reference.
  const s = await skopeoCopy(`docker://${ferry.host}/library/multi:latest`, `oci:${join(scratch, `multi-${round}`)}:latest`, ["--all", "--src-tls-verify=false"]);
  expect(s.stderr).toBe(s.code === 0 ? s.stderr : "");
  expect(s.code).toBe(0);
  expect(s.digest).toBe(images.multi.manifestDigest);

  // podman: Docker Hub name, registries.conf mirror (the real docker.io is unreachable).
  const p = await podmanPull({ ref: "docker.io/library/five:latest", registries: podmanRegistries() });
  expect({ code: p.code, err: p.code ? p.stderr : "" }).toEqual({ code: 0, err: "" });
  expect(p.digest).toBe(images.five.manifestDigest);

  // ctr: hosts.toml mirror; containerd sends ?ns=docker.io.
  const c = await ctrPull({ ref: "docker.io/library/multidocker:latest", hosts: mirrorFor() });
  expect({ code: c.code, err: c.code ? c.stderr.slice(-2000) : "" }).toEqual({ code: 0, err: "" });
  expect(c.digest).toBe(images.multiDocker.manifestDigest);
  expect(c.requests.length).toBeGreaterThan(0);
  expect(c.requests.every((r) => r.url.startsWith(ferry.url) && r.url.includes("ns=docker.io"))).toBe(true);

  // docker: daemon.json registry-mirrors; an official image by its short name, and a
  // two-component name like grafana/grafana.
  for (const [ref, image] of [
    ["big", images.big],
    ["grafana/five:12.0.0", images.five],
  ] as const) {
    await dockerd.docker(["rmi", "-f", ref]);
    const d = await dockerd.pull(ref);
    expect({ ref, code: d.code, err: d.code ? d.stderr : "" }).toEqual({ ref, code: 0, err: "" });
    expect(d.digest).toBe(image.manifestDigest);
  }
}

describe("real clients through ferry", () => {
  test("skopeo, podman, ctr and docker pull through ferry with the right digests", async () => {
    upstream.clearLog();
    await pullAll("first");
    // The big layer was really fetched through ferry, once.
    const bigBlob = images.big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    expect(upstream.count({ server: "cdn", method: "GET", pathIncludes: bigBlob.digest.slice(7) })).toBe(1);
    // Every layer of every pulled image came from upstream at most once.
    for (const image of [images.multi, images.five, images.big, images.multiDocker]) {
      for (const blob of image.blobs) {
        const gets = upstream.count({ server: "cdn", method: "GET", pathIncludes: blob.digest.slice(7) });
        expect({ blob: blob.digest, atMostOnce: gets <= 1 }).toEqual({ blob: blob.digest, atMostOnce: true });
      }
    }
  }, 300_000);

  test("concurrent cold pulls of one image make exactly one upstream GET per blob", async () => {
    upstream.clearLog();
    const pulls = [
      skopeoCopy(`docker://${ferry.host}/library/fanin:latest`, `dir:${join(scratch, "fanin-a")}`, ["--src-tls-verify=false"]),
      skopeoCopy(`docker://${ferry.host}/library/fanin:latest`, `dir:${join(scratch, "fanin-b")}`, ["--src-tls-verify=false"]),
      podmanPull({ ref: "docker.io/library/fanin:latest", registries: podmanRegistries() }),
      ctrPull({ ref: "docker.io/library/fanin:latest", hosts: mirrorFor() }),
    ];
    for (const r of await Promise.all(pulls)) {
      expect({ code: r.code, err: r.code ? r.stderr.slice(-1500) : "" }).toEqual({ code: 0, err: "" });
      expect(r.digest).toBe(images.fanIn.manifestDigest);
    }
    for (const blob of images.fanIn.blobs) {
      expect({ blob: blob.digest, gets: upstream.count({ server: "cdn", method: "GET", pathIncludes: blob.digest.slice(7) }) }).toEqual({ blob: blob.digest, gets: 1 });
    }
    expect(upstream.count({ server: "front", method: "GET", pathIncludes: "/manifests/", status: 200 })).toBe(1);
  }, 180_000);

  test("with the upstream gone, every pull succeeds again from ferry's cache", async () => {
    await upstream.stopAll();
    try {
      const refused = await fetch(`${upstream.url}/v2/`).then(
        () => "answered",
        () => "refused",
      );
      expect(refused).toBe("refused");
      await pullAll("offline");
    } finally {
      await upstream.start();
    }
  }, 300_000);
});
