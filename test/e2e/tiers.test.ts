// Issue 3, tiers: ferry falls through to the next endpoint when the first one never
// answers or breaks in the middle of a blob, remembers the trouble (cooldown), and
// resumes a broken blob from the byte reached. Upstream = real distribution; the faulty
// tiers are a socket that accepts and never answers, and the harness CDN resetting.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { join } from "node:path";
import { startFaultFront, type FaultFront, type FrontMode } from "../harness/fault-front.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { startFaultTier } from "../harness/fault-tier.ts";
import { bigLayer, fiveLayer, readBlob, type BuiltImage } from "../harness/images.ts";
import { startNginx, type NginxProcess } from "../harness/nginx.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, sha256 } from "../harness/oci.ts";


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

describe("rate-limited primary, relay as second tier", () => {
  test("429s send pulls to the relay during the cooldown, then back to the primary", async () => {
    const { startRateLimitedFront } = await import("../harness/nginx.ts");
    const { skopeoCopy } = await import("../harness/clients.ts");
    for (let i = 1; i <= 8; i++) await upstream.push(five, `library/limited:t${i}`);
    // Docker Hub-like pull limit: manifest GETs past ~1/s get 429 + Retry-After: 3.
    const primary = await startRateLimitedFront(upstream.url, { ratePerMinute: 60, retryAfterSeconds: 3 });
    const relayPort = await freePort();
    const relay = Bun.spawn([`${import.meta.dir}/../../node_modules/.bin/bun`, `${import.meta.dir}/../../src/main.ts`, "relay", "--listen", `127.0.0.1:${relayPort}`], {
      env: { ...process.env, RELAY_REGISTRIES: `docker.io=${upstream.url}`, RELAY_SECRET: "s3cret", RELAY_ALLOW_PRIVATE_REDIRECTS: "true" },
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitFor(() => fetch(`http://127.0.0.1:${relayPort}/v2/`, { headers: { "x-ferry-relay-secret": "s3cret" } }).then(() => true), { timeoutMs: 5_000, what: "the relay to listen" });
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nallow_private_redirects = true\ntimeout = "5s"\nendpoints = ["${primary.url}", { url = "http://127.0.0.1:${relayPort}", headers = { "x-ferry-relay-secret" = "s3cret" } }]\n`,
    });
    const pullTag = async (tag: string) => {
      const r = await fetch(`${ferry.url}/v2/library/limited/manifests/${tag}`, { headers: { Accept: ACCEPT } });
      await r.arrayBuffer();
      return { status: r.status, digest: r.headers.get("docker-content-digest") };
    };
    const primaryGets = (tag: string) => primary.accessLog().filter((l) => l.method === "GET" && l.uri.endsWith(`/manifests/${tag}`));
    try {
      // Burst of pulls: the first pass the primary, then it 429s and the relay takes over.
      for (const tag of ["t1", "t2", "t3", "t4", "t5"]) expect(await pullTag(tag)).toEqual({ status: 200, digest: five.manifestDigest });
      const limited = primary.accessLog().filter((l) => l.status === 429);
      expect(limited.length).toBe(1); // asked once, then skipped during the cooldown
      const limitedTag = /manifests\/(t\d)$/.exec(limited[0]!.uri)![1]!;
      const afterLimit = ["t1", "t2", "t3", "t4", "t5"].slice(["t1", "t2", "t3", "t4", "t5"].indexOf(limitedTag) + 1);
      for (const tag of afterLimit) expect(primaryGets(tag)).toEqual([]);
      // Every tag reached the upstream once, through one tier or the other.
      expect(upstream.entries({ server: "front", method: "GET", pathRegex: /\/manifests\/t[1-5]$/, status: 200 }).length).toBe(5);
      // A real client pulls through the relay while the primary rests.
      const s = await skopeoCopy(`docker://${ferry.host}/library/limited:t6`, `dir:${join(tmpdirOf(ferry), "t6")}`, ["--src-tls-verify=false"]);
      expect({ code: s.code, err: s.code ? s.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
      expect(primaryGets("t6")).toEqual([]);
      // After Retry-After (3 s) the primary is used again: wait for its cooldown to end.
      await waitFor(
        async () => {
          const s = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { available: boolean }[] }[] };
          return s.registries.find((r) => r.registry === "docker.io")!.endpoints[0]!.available;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: "the primary's cooldown to end" },
      );
      expect(await pullTag("t7")).toEqual({ status: 200, digest: five.manifestDigest });
      expect(primaryGets("t7").map((l) => l.status)).toEqual([200]);
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { recentRateLimits: number }[] }[] };
      expect(status.registries.find((r) => r.registry === "docker.io")!.endpoints[0]!.recentRateLimits).toBe(1);
      // The relay's own log: it served the limited tag, the ones after it, and t6; not t7.
      relay.kill();
      await relay.exited;
      const relayLog = (await new Response(relay.stdout).text())
        .split("\n")
        .filter((l) => l.includes('"relay request"'))
        .map((l) => JSON.parse(l) as { method: string; path: string; status: number });
      const relayedTags = relayLog.filter((e) => e.method === "GET" && e.status === 200).map((e) => /\/manifests\/(t\d)$/.exec(e.path)?.[1]).filter(Boolean);
      expect(relayedTags).toEqual([limitedTag, ...afterLimit, "t6"]);
    } finally {
      await ferry.stop();
      relay.kill();
      await relay.exited;
      await primary.stop();
    }
  }, 120_000);
});

function tmpdirOf(f: { dir: string }): string {
  return f.dir;
}

describe("egress proxy", () => {
  test("an endpoint with `proxy` reaches the registry, its token realm and its CDN through the proxy", async () => {
    const { startForwardProxy } = await import("../harness/forward-proxy.ts");
    const proxy = await startForwardProxy();
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nendpoints = [{ url = "${upstream.url}", proxy = "${proxy.url}" }]\nallow_private_redirects = true\n`,
    });
    try {
      const m = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } });
      expect(m.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      const blob = five.blobs[0]!;
      const b = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
      expect(sha256(await b.arrayBuffer())).toBe(blob.digest);
      const seen = proxy.requests();
      expect(seen.some((l) => l.includes(`${upstream.url}/v2/library/five/manifests/latest`))).toBe(true);
      expect(seen.some((l) => l.includes(upstream.tokenUrl))).toBe(true);
      expect(seen.some((l) => l.includes(`${upstream.cdnUrl}/blobs/${blob.digest}`))).toBe(true);
    } finally {
      await ferry.stop();
      await proxy.stop();
    }
  }, 60_000);
});

describe("blob_endpoints", () => {
  test("manifests and blobs can use different tier orders", async () => {
    // Blobs go through another mirror (an nginx in front of the same upstream) first.
    const port = await freePort();
    const mirror: NginxProcess = await startNginx(`server { listen 127.0.0.1:${port}; location / { proxy_pass ${upstream.url}; proxy_set_header Host $http_host; } }`, [port]);
    const ferry = await startFerry({
      config: `[[registry]]\nname = "docker.io"\nallow_private_redirects = true\nendpoints = ["${upstream.url}"]\nblob_endpoints = ["http://127.0.0.1:${port}", "${upstream.url}"]\n`,
    });
    try {
      const m = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } });
      expect(m.headers.get("docker-content-digest")).toBe(five.manifestDigest);
      for (const blob of five.blobs) {
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
        expect(sha256(await r.arrayBuffer())).toBe(blob.digest);
      }
      const viaMirror = mirror.accessLog();
      expect(viaMirror.filter((l) => l.uri.includes("/manifests/")).length).toBe(0);
      for (const blob of five.blobs) expect(viaMirror.some((l) => l.uri.endsWith(`/blobs/${blob.digest}`) && l.method === "GET")).toBe(true);
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { url: string; usedFor: string[] }[] }[] };
      const hub = status.registries.find((r) => r.registry === "docker.io")!;
      expect(hub.endpoints.find((e) => e.url === upstream.url)!.usedFor).toEqual(["manifest", "blob"]);
      expect(hub.endpoints.find((e) => e.url.endsWith(`:${port}`))!.usedFor).toEqual(["blob"]);
    } finally {
      await ferry.stop();
      await mirror.stop();
    }
  }, 60_000);
});

// Issue 15 (items 2, 5, 7, 8) and 19.3: the faults are injected by small in-process
// servers in front of the real registry (test/harness/fault-front.ts) or by the harness
// upstream's own fault switch; the bytes always come from distribution.
describe("tier faults the networks in front of registries produce", () => {
  const hub = (endpoints: string, extra = "") => `[[registry]]\nname = "docker.io"\nendpoints = [${endpoints}]\nallow_private_redirects = true\n${extra}`;
  const getManifest = async (url: string, tag = "latest") => {
    const started = performance.now();
    const r = await fetch(`${url}/v2/library/five/manifests/${tag}`, { headers: { Accept: ACCEPT }, signal: AbortSignal.timeout(20_000) });
    const body = await r.arrayBuffer();
    return { status: r.status, digest: r.headers.get("docker-content-digest"), bodyDigest: sha256(body), cache: r.headers.get("x-ferry-cache"), warning: r.headers.get("warning"), ms: performance.now() - started, headers: r.headers, body };
  };
  /** A fault front (in `mode`) and a ferry whose config names it; both stopped whatever happens. */
  const withFront = async (mode: FrontMode, config: (front: string) => string, body: (ferry: FerryProcess, front: FaultFront) => Promise<void>) => {
    const front = await startFaultFront(upstream.url, mode);
    try {
      const ferry = await startFerry({ config: config(front.url) });
      try {
        await body(ferry, front);
      } finally {
        await ferry.stop();
      }
    } finally {
      await front.stop();
    }
  };

  test("an HTML 403 page from the first tier is a tier failure: the next tier serves the pull, with ferry's User-Agent everywhere", async () => {
    await withFront("html-403", (front) => hub(`"${front}", "${upstream.url}"`, `timeout = "5s"\nfailure_cooldown = "60s"\n`), async (ferry, cloudflare) => {
      upstream.clearLog();
      const m = await getManifest(ferry.url);
      expect({ status: m.status, digest: m.digest, bodyDigest: m.bodyDigest }).toEqual({ status: 200, digest: five.manifestDigest, bodyDigest: five.manifestDigest });
      for (const blob of five.blobs) {
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
        expect({ status: r.status, digest: sha256(await r.arrayBuffer()) }).toEqual({ status: 200, digest: blob.digest });
      }
      // Asked once, then resting: the blobs went straight to the second tier.
      expect(cloudflare.log.map((l) => l.status)).toEqual([403]);
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { url: string; coolingDown: boolean; lastError?: string }[] }[] };
      const tiers = status.registries.find((r) => r.registry === "docker.io")!.endpoints;
      expect(tiers[0]).toMatchObject({ url: cloudflare.url, coolingDown: true });
      expect(tiers[0]!.lastError).toContain("not a registry answer");
      // Every request ferry made (registry, token service, CDN) said who it is.
      const pkg = (await Bun.file(join(import.meta.dir, "../../package.json")).json()) as { version: string };
      const agents = new Set([...cloudflare.log.map((l) => l.userAgent), ...upstream.log.map((e) => e.headers.userAgent)]);
      expect([...agents]).toEqual([`ferry/${pkg.version}`]);
      expect(upstream.count({ server: "token" })).toBeGreaterThan(0);
      expect(upstream.count({ server: "cdn" })).toBeGreaterThan(0);
    });
  }, 60_000);

  test("an HTML 403 from the only tier is a 502 that says so; a registry's JSON 403 stays DENIED", async () => {
    await withFront("html-403", (front) => hub(`"${front}"`, `timeout = "5s"\nfailure_cooldown = "1s"\n`), async (ferry, cloudflare) => {
      const m = await getManifest(ferry.url);
      expect(m.status).toBe(502);
      const body = JSON.parse(new TextDecoder().decode(m.body)) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.code).toBe("UNAVAILABLE");
      expect(body.errors[0]!.message).toContain("not a registry answer");
    });
    const direct = await startFerry({ config: hub(`"${upstream.url}"`, `timeout = "5s"\n`) });
    try {
      await upstream.setFault({ kind: "status", status: 403, server: "front", match: /\/manifests\//, body: JSON.stringify({ errors: [{ code: "DENIED", message: "requested access to the resource is denied" }] }) });
      const m = await getManifest(direct.url, "denied-tag");
      expect(m.status).toBe(403);
      expect((JSON.parse(new TextDecoder().decode(m.body)) as { errors: { code: string }[] }).errors[0]!.code).toBe("DENIED");
    } finally {
      await upstream.setFault(null);
      await direct.stop();
    }
  }, 60_000);

  test("a body that stalls after its headers costs that tier its timeout, and the next tier answers", async () => {
    await withFront("stall-body", (front) => hub(`"${front}", "${upstream.url}"`, `timeout = "1s"\nfailure_cooldown = "60s"\n`), async (ferry, stalling) => {
      const m = await getManifest(ferry.url);
      expect({ status: m.status, digest: m.digest, bodyDigest: m.bodyDigest }).toEqual({ status: 200, digest: five.manifestDigest, bodyDigest: five.manifestDigest });
      expect(stalling.log.length).toBe(1);
      expect(ferry.logs()).toContain("timeout waiting for body");
    });
  }, 60_000);

  // Found by the differential test (FERRY_SEED=1571165889): headers went out only with a
  // range's first byte, so a download that failed before reaching it reset the connection,
  // and the client (Bun's fetch on a pooled socket) sent the request again, four times.
  test("a Range GET past the bytes a stalling tier's download reached gets an OCI error in bounded time, not a reset", async () => {
    const tier = await startFaultTier(upstream.url);
    try {
      const ferry = await startFerry({ config: hub(`"${tier.url}"`, `timeout = "2s"\nstall_timeout = "1s"\nfailure_cooldown = "1s"\n`) });
      try {
        const blob = five.blobs.reduce((a, b) => (a.size > b.size ? a : b));
        const whole = readBlob(five, blob.digest);
        // Each attempt of the download gets a third of what it asks for, then silence: after
        // its four attempts it holds 80% of the blob, never the last tenth.
        const start = Math.floor(whole.byteLength * 0.9);
        const range = { Range: `bytes=${start}-${whole.byteLength - 1}` };
        await tier.setFault("stall");
        const started = performance.now();
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`, { headers: range, signal: AbortSignal.timeout(30_000) });
        const body = (await r.json()) as { errors: { code: string; message: string }[] };
        const ms = performance.now() - started;
        expect({ status: r.status, code: body.errors[0]!.code }).toEqual({ status: 504, code: "UNAVAILABLE" });
        expect(body.errors[0]!.message).toContain("timed out (body)");
        // Four attempts of 1 s stall each (plus their requests), not one download per client retry.
        expect(ms).toBeLessThan(8_000);
        expect(ferry.logs().split("\n").filter((l) => l.includes("blob download failed")).length).toBe(1);
        await tier.setFault("none");
        await waitFor(async () => ((await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; endpoints: { available: boolean }[] }[] }).registries.find((x) => x.registry === "docker.io")!.endpoints[0]!.available, { timeoutMs: 10_000, what: "the tier's cooldown to end" });
        const again = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`, { headers: range, signal: AbortSignal.timeout(30_000) });
        expect({ status: again.status, digest: sha256(await again.arrayBuffer()) }).toEqual({ status: 206, digest: sha256(whole.subarray(start)) });
      } finally {
        await ferry.stop();
      }
    } finally {
      await tier.stop();
    }
  }, 60_000);

  test("a hanging upstream costs one timeout per cooldown window: the cached tag is served at once, marked stale, and counted", async () => {
    const ferry = await startFerry({ tagTtl: "0s", config: hub(`"${upstream.url}"`, `timeout = "2s"\nfailure_cooldown = "60s"\n`) });
    try {
      const warm = await getManifest(ferry.url);
      expect({ status: warm.status, digest: warm.digest }).toEqual({ status: 200, digest: five.manifestDigest });
      await upstream.setFault({ kind: "hang", server: "front" });
      upstream.clearLog();
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await getManifest(ferry.url));
      for (const a of answers) {
        expect({ status: a.status, digest: a.digest, bodyDigest: a.bodyDigest, cache: a.cache, warning: a.warning }).toEqual({ status: 200, digest: five.manifestDigest, bodyDigest: five.manifestDigest, cache: "stale", warning: '110 - "Response is Stale"' });
      }
      // The first paid the timeout; the others did not ask the resting tier at all.
      expect(upstream.count({ server: "front", pathIncludes: "/manifests/" })).toBe(1);
      for (const a of answers.slice(1)) expect(a.ms).toBeLessThan(2_000);
      // The tag list too: the cached tags, at once, marked stale.
      const started = performance.now();
      const tags = await fetch(`${ferry.url}/v2/library/five/tags/list`, { signal: AbortSignal.timeout(20_000) });
      expect({ status: tags.status, cache: tags.headers.get("x-ferry-cache"), warning: tags.headers.get("warning"), body: await tags.json() }).toEqual({ status: 200, cache: "stale", warning: '110 - "Response is Stale"', body: { name: "library/five", tags: ["latest"] } });
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(upstream.count({ server: "front" })).toBe(1);
      const metrics = await (await fetch(`${ferry.url}/metrics`)).text();
      expect(metrics).toContain('ferry_stale_responses_total{registry="docker.io",kind="manifest"} 6');
      expect(metrics).toContain('ferry_stale_responses_total{registry="docker.io",kind="tags"} 1');
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { registry: string; staleResponses: Record<string, number> }[] };
      expect(status.registries.find((r) => r.registry === "docker.io")!.staleResponses).toEqual({ manifest: 6, tags: 1 });
    } finally {
      await upstream.setFault(null);
      await ferry.stop();
    }
  }, 60_000);

  test("an upstream 429 without Retry-After reaches the client with the cooldown ferry applies", async () => {
    await withFront("429-no-retry-after", (front) => hub(`"${front}"`, `cooldown = "7s"\n`), async (ferry, limited) => {
      const m = await getManifest(ferry.url);
      expect({ status: m.status, retryAfter: m.headers.get("retry-after") }).toEqual({ status: 429, retryAfter: "7" });
    });
  }, 60_000);

  test("tiers [refused, rate-limited]: a blob asked while the 429 tier rests gets 429 with the time until a tier is free", async () => {
    const refusedPort = await freePort();
    await withFront("429-no-retry-after", (front) => hub(`"http://127.0.0.1:${refusedPort}", "${front}"`, `cooldown = "30s"\nfailure_cooldown = "1s"\n`), async (ferry, limited) => {
      const [a, b] = five.blobs;
      const first = await fetch(`${ferry.url}/v2/library/five/blobs/${a!.digest}`);
      expect({ status: first.status, retryAfter: first.headers.get("retry-after") }).toEqual({ status: 429, retryAfter: "30" });
      await first.arrayBuffer();
      const again = await fetch(`${ferry.url}/v2/library/five/blobs/${b!.digest}`);
      const body = (await again.json()) as { errors: { code: string }[] };
      expect({ status: again.status, code: body.errors[0]!.code }).toEqual({ status: 429, code: "TOOMANYREQUESTS" });
      const wait = Number(again.headers.get("retry-after"));
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(30);
      expect(limited.log.length).toBe(1); // the resting tier was not asked again
    });
  }, 60_000);
});
