// Issue 3, tiers: ferry falls through to the next endpoint when the first one never
// answers or breaks in the middle of a blob, remembers the trouble (cooldown), and
// resumes a broken blob from the byte reached. Upstream = real distribution; the faulty
// tiers are a socket that accepts and never answers, and the harness CDN resetting.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startNginx, type NginxProcess } from "../harness/nginx.ts";
import { freePort } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

const ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
const sha256 = (bytes: ArrayBuffer) => `sha256:${new Bun.CryptoHasher("sha256").update(new Uint8Array(bytes)).digest("hex")}`;

let upstream: Upstream;
let five: BuiltImage;
let big: BuiltImage;

beforeAll(async () => {
  upstream = await startUpstream();
  five = await fiveLayer({ seed: "tiers" });
  big = await bigLayer();
  await upstream.push(five, "library/five:latest");
  await upstream.push(big, "library/big:latest");
}, 180_000);

afterAll(async () => {
  await upstream?.stop();
});

/** A TCP server that accepts connections and never says a word. */
function silentServer(): Promise<{ url: string; accepted: () => number; stop: () => void }> {
  let accepted = 0;
  const sockets = new Set<Socket<undefined>>();
  const listener: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        accepted++;
        sockets.add(s);
      },
      data() {},
      close(s) {
        sockets.delete(s);
      },
    },
  });
  return Promise.resolve({
    url: `http://127.0.0.1:${listener.port}`,
    accepted: () => accepted,
    stop: () => {
      for (const s of sockets) s.end();
      listener.stop(true);
    },
  });
}

describe("tier fallback", () => {
  test("a blob body that stalls is abandoned after stall_timeout and resumed from the byte reached", async () => {
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\nstall_timeout = "1s"\nfailure_cooldown = "1s"\n`,
    });
    try {
      const blob = five.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      upstream.clearLog();
      await upstream.setFault({ kind: "stall", afterBytes: 1000, times: 1, match: new RegExp(blob.digest.slice(7)) });
      const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
      expect(sha256(await r.arrayBuffer())).toBe(blob.digest);
      const resumed = upstream.log.filter((e) => e.method === "GET" && e.path.includes(blob.digest.slice(7)) && e.headers.range);
      expect(resumed.map((e) => e.headers.range)).toEqual(["bytes=1000-"]);
      expect(ferry.logs()).toContain("blob download interrupted; resuming");
    } finally {
      await upstream.setFault(null);
      await ferry.stop();
    }
  }, 60_000);

  test("a primary that accepts and never answers: served by the next tier, then skipped during its cooldown", async () => {
    const silent = await silentServer();
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nendpoints = ["${silent.url}", "${upstream.url}"]\nallow_private_redirects = true\ntimeout = "1s"\nfailure_cooldown = "60s"\n`,
    });
    try {
      let t = performance.now();
      const first = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } });
      const firstMs = performance.now() - t;
      expect(first.status).toBe(200);
      expect(first.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      expect(firstMs).toBeGreaterThanOrEqual(1000); // paid the timeout once
      const acceptedAfterFirst = silent.accepted();
      expect(acceptedAfterFirst).toBeGreaterThanOrEqual(1);
      // Everything else skips the silent tier while it cools down.
      t = performance.now();
      for (const blob of five.blobs) {
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
        expect(sha256(await r.arrayBuffer())).toBe(blob.digest);
      }
      expect(performance.now() - t).toBeLessThan(1000);
      expect(silent.accepted()).toBe(acceptedAfterFirst);
      // The status API shows the sick endpoint cooling down.
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { url: string; tier: number; coolingDown: boolean; lastError?: string }[] }[] };
      const hub = status.registries.find((r) => r.registry === "docker.io")!;
      expect(hub.endpoints[0]).toMatchObject({ url: silent.url, tier: 0, coolingDown: true });
      expect(hub.endpoints[0]!.lastError).toContain("timeout");
      expect(hub.endpoints[1]).toMatchObject({ url: upstream.url, tier: 1, coolingDown: false });
      expect(ferry.logs()).toContain("upstream tier failed; trying next");
    } finally {
      await ferry.stop();
      silent.stop();
    }
  }, 60_000);

  test("a primary that resets mid-blob: finished via the next tier from the byte reached, digest verified", async () => {
    // The second tier is another mirror: an nginx reverse proxy in front of the same upstream.
    const port = await freePort();
    const mirror: NginxProcess = await startNginx(`server { listen 127.0.0.1:${port}; location / { proxy_pass ${upstream.url}; proxy_set_header Host $http_host; } }`, [port]);
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}", "http://127.0.0.1:${port}"]\nallow_private_redirects = true\ntimeout = "5s"\n`,
    });
    try {
      const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const breakAt = 30 * 1024 * 1024;
      upstream.clearLog();
      await upstream.setFault({ kind: "reset", afterBytes: breakAt, times: 1, match: new RegExp(blob.digest.slice(7)) });
      const r = await fetch(`${ferry.url}/v2/library/big/blobs/${blob.digest}`);
      expect(r.status).toBe(200);
      const bytes = await r.arrayBuffer();
      expect(bytes.byteLength).toBe(blob.size);
      expect(sha256(bytes)).toBe(blob.digest);
      const first = upstream.entries({ server: "cdn", method: "GET", pathIncludes: blob.digest.slice(7) });
      expect(first.length).toBe(1);
      expect(first[0]!.headers.range).toBeUndefined();
      // The resume asks only for what is missing. (Distribution answers a ranged blob GET
      // with 206 itself instead of redirecting, so it shows in the front's log.)
      const resumed = upstream.log.filter((e) => e.method === "GET" && e.path.includes(blob.digest.slice(7)) && e.headers.range && e.status === 206);
      expect(resumed.length).toBe(1);
      const resumeFrom = Number(/^bytes=(\d+)-$/.exec(resumed[0]!.headers.range ?? "")?.[1]);
      expect(resumeFrom).toBeGreaterThan(0);
      expect(resumeFrom).toBeLessThanOrEqual(breakAt);
      expect(resumed[0]!.bytes).toBe(blob.size - resumeFrom);
      expect(mirror.accessLog().some((l) => l.uri.includes(blob.digest) && l.method === "GET")).toBe(true);
      // And the cached copy is whole.
      const again = await fetch(`${ferry.url}/v2/library/big/blobs/${blob.digest}`);
      expect(sha256(await again.arrayBuffer())).toBe(blob.digest);
      expect(upstream.log.filter((e) => e.method === "GET" && e.path.includes(blob.digest.slice(7)) && e.status >= 200 && e.status < 400).length).toBe(3); // front 307 + CDN + resumed 206
    } finally {
      await upstream.setFault(null);
      await ferry.stop();
      await mirror.stop();
    }
  }, 120_000);
});
