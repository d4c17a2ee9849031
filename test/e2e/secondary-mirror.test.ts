// Issue 19.4, any secondary mirror: the URL schemes secondary mirrors come in, each tried
// with a second ferry as the secondary tier of the first, for Docker Hub and for ghcr.io,
// while the primary fails in each way the tiers handle (refused, 5xx, 429):
//   host per registry  http://B/library/img             (B's Host selects the registry)
//   path prefix        http://B/v2/docker.io/library/img (endpoint repository_prefix)
//   containerd style   http://B/v2/library/img?ns=…      (endpoint ns)
// Upstream behind B = real distribution (harness); A's answers are checked by digest and
// bytes (skopeo for one image per scheme), B's own access log shows how it was asked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { skopeoInspect } from "../harness/clients.ts";
import { freePort, startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { waitFor } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, OTHER_REGISTRIES_OFF, sha256 } from "../harness/oci.ts";

const GHCR_OFF = '[[registry]]\nname = "ghcr.io"\nenabled = false';
const OTHERS_OFF = OTHER_REGISTRIES_OFF.replace(GHCR_OFF, "");
let upstream: Upstream;
let b1: FerryProcess; // docker.io and ghcr.io by prefix or ns; docker.io by default
let b2: FerryProcess; // ghcr.io by its Host name
let hub: BuiltImage;
let gh: BuiltImage;
let failing: { url: string; status: number; asked: number; stop: () => void };

beforeAll(async () => {
  upstream = await startUpstream();
  hub = await fiveLayer({ seed: "secondary-hub" });
  gh = await fiveLayer({ seed: "secondary-ghcr" });
  await upstream.push(hub, "library/hubimg:latest");
  await upstream.push(gh, "owner/ghimg:latest");
  const both = `${OTHERS_OFF}\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n[[registry]]\nname = "ghcr.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n`;
  b1 = await startFerry({ config: both });
  const port2 = await freePort();
  b2 = await startFerry({ port: port2, config: `${both}hosts = ["127.0.0.1:${port2}"]\n` });
  // The primary that fails with a status (503 or 429); "refused" is a port nobody listens on.
  const state = { status: 503, asked: 0 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch() {
      state.asked++;
      const body = JSON.stringify({ errors: [{ code: state.status === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE", message: "primary down (test)" }] });
      return new Response(body, { status: state.status, headers: { "content-type": "application/json", ...(state.status === 429 && { "retry-after": "60" }) } });
    },
  });
  failing = {
    url: `http://127.0.0.1:${server.port}`,
    get status() {
      return state.status;
    },
    set status(s: number) {
      state.status = s;
    },
    get asked() {
      return state.asked;
    },
    stop: () => server.stop(true),
  };
}, 180_000);

afterAll(async () => {
  failing?.stop();
  await b1?.stop();
  await b2?.stop();
  await upstream?.stop();
});

interface AccessLine {
  method: string;
  path: string;
  status: number;
  registry?: string;
  msg: string;
}
function accessLines(b: FerryProcess): AccessLine[] {
  return b
    .logs()
    .split("\n")
    .filter((l) => l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l) as AccessLine);
}

type Scheme = "host" | "prefix" | "ns";
/** A's secondary endpoint per scheme, and the path the second ferry (hubB/ghB) should see. */
const SECONDARY: Record<Scheme, { hub: () => string; gh: () => string; hubB: () => FerryProcess; ghB: () => FerryProcess; hubPath: string; ghPath: string }> = {
  host: { hub: () => `"${b1.url}"`, gh: () => `"${b2.url}"`, hubB: () => b1, ghB: () => b2, hubPath: "/v2/library/hubimg/manifests/latest", ghPath: "/v2/owner/ghimg/manifests/latest" },
  prefix: { hub: () => `{ url = "${b1.url}", repository_prefix = "docker.io" }`, gh: () => `{ url = "${b1.url}", repository_prefix = "ghcr.io" }`, hubB: () => b1, ghB: () => b1, hubPath: "/v2/docker.io/library/hubimg/manifests/latest", ghPath: "/v2/ghcr.io/owner/ghimg/manifests/latest" },
  ns: { hub: () => `{ url = "${b1.url}", ns = "docker.io" }`, gh: () => `{ url = "${b1.url}", ns = "ghcr.io" }`, hubB: () => b1, ghB: () => b1, hubPath: "/v2/library/hubimg/manifests/latest", ghPath: "/v2/owner/ghimg/manifests/latest" },
};

const served = (b: FerryProcess, path: string, registry: string) => accessLines(b).filter((l) => l.path === path && l.registry === registry && l.status === 200).length;

async function pullThrough(a: FerryProcess, name: string, image: BuiltImage): Promise<void> {
  const m = await fetch(`${a.url}/v2/${name}/manifests/latest`, { headers: { Accept: ACCEPT } });
  expect(m.status).toBe(200);
  expect(sha256(await m.arrayBuffer())).toBe(image.manifestDigest);
  const layer = image.blobs.reduce((x, y) => (x.size > y.size ? x : y));
  const b = await fetch(`${a.url}/v2/${name}/blobs/${layer.digest}`);
  expect(b.status).toBe(200);
  expect(sha256(await b.arrayBuffer())).toBe(layer.digest);
}

describe("secondary mirror schemes", () => {
  for (const scheme of ["host", "prefix", "ns"] as const) {
    test(`${scheme}: Docker Hub and ghcr.io through a second ferry while the primary is refused, 503s or 429s`, async () => {
      const s = SECONDARY[scheme];
      for (const failure of ["refused", 503, 429] as const) {
        const primary = failure === "refused" ? `http://127.0.0.1:${await freePort()}` : failing.url;
        if (failure !== "refused") failing.status = failure;
        const askedBefore = failing.asked;
        const a = await startFerry({
          config: `${OTHERS_OFF}\n[[registry]]\nname = "docker.io"\nallow_private_redirects = true\nendpoints = ["${primary}", ${s.hub()}]\n[[registry]]\nname = "ghcr.io"\nallow_private_redirects = true\nendpoints = ["${primary}", ${s.gh()}]\n`,
        });
        try {
          const hubBefore = served(s.hubB(), s.hubPath, "docker.io");
          const ghBefore = served(s.ghB(), s.ghPath, "ghcr.io");
          await pullThrough(a, "library/hubimg", hub);
          await pullThrough(a, "ghcr.io/owner/ghimg", gh);
          if (failure === 503) {
            const inspected = await skopeoInspect(`docker://${a.host}/ghcr.io/owner/ghimg:latest`, ["--raw"]);
            expect(inspected.code).toBe(0);
            expect(sha256(new TextEncoder().encode(inspected.stdout))).toBe(gh.manifestDigest);
          }
          if (failure !== "refused") expect(failing.asked).toBeGreaterThan(askedBefore);
          // The second ferry was asked in this scheme, and answered 200 for the right registry.
          await waitFor(() => served(s.hubB(), s.hubPath, "docker.io") > hubBefore, { timeoutMs: 5_000, what: `${scheme}: ${s.hubPath} in the second ferry's log` });
          await waitFor(() => served(s.ghB(), s.ghPath, "ghcr.io") > ghBefore, { timeoutMs: 5_000, what: `${scheme}: ${s.ghPath} in the second ferry's log` });
        } finally {
          await a.stop();
        }
      }
    }, 120_000);
  }
});
