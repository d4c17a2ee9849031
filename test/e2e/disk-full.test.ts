// Issue 15 item 9: a full local disk is a local fault. The cache dir is a small tmpfs
// mounted by the test (root), so ENOSPC comes from the kernel, not from a stand-in.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { hubRegistry } from "../harness/oci.ts";
import { run, waitFor } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let small: BuiltImage;
let big: BuiltImage;
const mountPoint = mkdtempSync(join(tmpdir(), "ferry-diskfull-"));
let mounted = false;

const sha256 = (bytes: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;

beforeAll(async () => {
  upstream = await startUpstream();
  small = await fiveLayer({ seed: "diskfull" });
  big = await bigLayer({ seed: "diskfull-big", sizeMiB: 4 });
  await upstream.push(small, "library/five:latest");
  await upstream.push(big, "library/big:latest");
  // 8 MiB: room for ferry's database and the 4 MiB layer, not for much more.
  await run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint], { timeoutMs: 10_000 });
  mounted = true;
}, 120_000);

afterAll(async () => {
  if (mounted) await run(["umount", "-l", mountPoint], { timeoutMs: 10_000, allowFail: true });
  rmSync(mountPoint, { recursive: true, force: true });
  await upstream?.stop();
});

/** Fills the filesystem to the last block (bounded: the tmpfs is 8 MiB). */
function fill(path: string): void {
  const chunk = new Uint8Array(64 * 1024);
  const fd = openSync(path, "w");
  try {
    for (let i = 0; i < 1024; i++) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
}

async function endpointState(ferry: FerryProcess): Promise<{ coolingDown: boolean; consecutiveFailures: number }[]> {
  const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { endpoints: { coolingDown: boolean; consecutiveFailures: number }[] }[] };
  return status.registries[0]!.endpoints;
}

describe("a full cache disk", () => {
  test("a full disk is reported as such; blobs are streamed uncached, the upstream is not blamed", async () => {
    const cacheDir = join(mountPoint, "a");
    mkdirSync(cacheDir, { recursive: true });
    const ferry = await startFerry({ cacheDir, config: hubRegistry(upstream.url) });
    const filler = join(mountPoint, "filler-a");
    try {
      fill(filler);
      upstream.clearLog();
      for (const blob of small.blobs) {
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
        expect(r.status).toBe(200);
        expect(sha256(await r.bytes())).toBe(blob.digest);
        // The answer the disk refused is the one streamed: the upstream is asked once.
        expect(upstream.count({ server: "front", method: "GET", pathIncludes: `/blobs/${blob.digest}`, status: [200, 307] })).toBe(1);
        expect(upstream.count({ server: "cdn", method: "GET", pathIncludes: blob.digest.slice(7) })).toBe(1);
      }
      // Every endpoint healthy: a local fault is never the upstream's.
      expect((await endpointState(ferry)).every((e) => !e.coolingDown && e.consecutiveFailures === 0)).toBe(true);
      const ready = await fetch(`${ferry.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toMatch(/disk full/i);
      const status = (await (await fetch(`${ferry.url}/api/status`)).json()) as { cache: { diskFull: string | null } };
      expect(status.cache.diskFull).toMatch(/ENOSPC/);
      expect(ferry.logs()).toMatch(/cache disk full/);
      expect(ferry.logs()).not.toMatch(/^\s+at /m); // no raw stack trace
      // Room again: the next miss is cached.
      rmSync(filler);
      const blob = small.blobs[0]!;
      const again = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
      expect(sha256(await again.bytes())).toBe(blob.digest);
      const hit = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
      expect(hit.headers.get("x-ferry-cache")).toBe("hit");
      expect(sha256(await hit.bytes())).toBe(blob.digest);
      expect((await fetch(`${ferry.url}/readyz`)).status).toBe(200);
    } finally {
      rmSync(filler, { force: true });
      await ferry.stop();
    }
  }, 120_000);

  test("the disk filling up mid-download: no resume loop, no cooldown for it; the next GET streams uncached", async () => {
    const cacheDir = join(mountPoint, "b");
    mkdirSync(cacheDir, { recursive: true });
    const ferry = await startFerry({ cacheDir, config: hubRegistry(upstream.url, 'stall_timeout = "1s"') });
    const filler = join(mountPoint, "filler-b");
    try {
      const layer = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const url = `${ferry.url}/v2/library/big/blobs/${layer.digest}`;
      upstream.clearLog();
      // The CDN stalls after 1 MiB (an upstream fault, resumed once); while it stalls the disk fills up.
      await upstream.setFault({ kind: "stall", afterBytes: 1024 * 1024, match: new RegExp(layer.digest.slice(7)), times: 1 });
      const first = await fetch(url);
      expect(first.status).toBe(200);
      const body = first.bytes().then(
        () => "complete",
        () => "broken",
      );
      await waitFor(
        async () => {
          const s = (await (await fetch(`${ferry.url}/api/status`)).json()) as { downloads: { bytes: number }[] };
          return s.downloads[0] && s.downloads[0].bytes >= 1024 * 1024;
        },
        { what: "the download to reach the stall" },
      );
      fill(filler);
      // The resume after the stall hits the full disk: the client's body breaks there (its first
      // MiB came from disk), and ferry asks no more: one GET, one resume.
      expect(await body).toBe("broken");
      await upstream.setFault(null);
      expect(upstream.count({ method: "GET", pathIncludes: `/blobs/${layer.digest}`, server: "front", status: [200, 206, 307] })).toBe(2);
      expect(ferry.logs()).not.toMatch(/"attempt":3/);
      // The stall counts against the tier once; the full disk does not.
      expect((await endpointState(ferry))[0]!.consecutiveFailures).toBeLessThanOrEqual(1);
      const second = await fetch(url);
      expect(second.status).toBe(200);
      expect(second.headers.get("x-ferry-cache")).toBe("bypass");
      expect(sha256(await second.bytes())).toBe(layer.digest);
      expect(ferry.logs()).toMatch(/cache disk full/);
      expect(ferry.logs()).not.toMatch(/^\s+at /m);
    } finally {
      await upstream.setFault(null);
      rmSync(filler, { force: true });
      await ferry.stop();
    }
  }, 120_000);
  test("streamed uncached, the upstream goes silent: resumed from the byte reached; on every attempt a 504 OCI error before the first byte, a cut stream after it", async () => {
    const cacheDir = join(mountPoint, "c");
    mkdirSync(cacheDir, { recursive: true });
    const ferry = await startFerry({ cacheDir, config: hubRegistry(upstream.url, 'stall_timeout = "1s"') });
    const filler = join(mountPoint, "filler-c");
    try {
      fill(filler);
      // The cached attempt's answer (refused by the full disk before its first byte) is the one
      // streamed uncached, and it and every resume go silent.
      const blob = small.blobs[0]!;
      await upstream.setFault({ kind: "stall", afterBytes: 0, match: new RegExp(blob.digest.slice(7)) });
      const silent = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`);
      expect(silent.status).toBe(504);
      const error = (await silent.json()) as { errors: { code: string; message: string }[] };
      expect(error.errors[0]!.code).toBe("UNAVAILABLE");
      expect(error.errors[0]!.message).toMatch(/timed out \(body\)/);
      // Silence is the upstream's failure, recorded against its tier; the full disk is not.
      expect((await endpointState(ferry))[0]!.consecutiveFailures).toBeGreaterThan(0);
      await upstream.setFault(null);

      // Silent once after the first MiB: the stream goes on from the byte reached, whole and verified.
      const layer = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const layerPath = new RegExp(layer.digest.slice(7));
      upstream.clearLog();
      await upstream.setFault({ kind: "stall", afterBytes: 1024 * 1024, match: layerPath, times: 1 });
      const resumed = await fetch(`${ferry.url}/v2/library/big/blobs/${layer.digest}`);
      expect(resumed.status).toBe(200);
      expect(resumed.headers.get("x-ferry-cache")).toBe("bypass");
      expect(sha256(await resumed.bytes())).toBe(layer.digest);
      // The bytes' answers (the front's 307s carry none): the whole blob, then the rest from the byte reached.
      const answers = upstream.log.filter((e) => e.method === "GET" && (e.status === 200 || e.status === 206) && layerPath.test(e.path));
      expect(answers.map((e) => e.headers.range ?? "whole")).toEqual(["whole", "bytes=1048576-"]);

      // Silent after the first MiB, then every resume refused: the client never gets the whole blob.
      // Its headers go out with the first verified chunk, which (the last chunk before the stall is
      // held back) may come only after the stall: so an error answer or a cut stream, never a 200
      // that completes.
      upstream.clearLog();
      await upstream.setFault({ kind: "stall", afterBytes: 1024 * 1024, match: layerPath, times: 1 });
      const cut = fetch(`${ferry.url}/v2/library/big/blobs/${layer.digest}`).then(async (r) => {
        if (r.status !== 200) return `${r.status}`;
        expect(r.headers.get("x-ferry-cache")).toBe("bypass");
        return r.bytes().then(
          (b) => `complete: ${b.byteLength} bytes`,
          () => "200, cut",
        );
      });
      // Switched once the first MiB is out, a stall timeout (1 s) before the first resume.
      await waitFor(() => upstream.log.some((e) => layerPath.test(e.path) && e.bytes === 1024 * 1024), { timeoutMs: 10_000, intervalMs: 10, what: "the first MiB sent" });
      await upstream.setFault({ kind: "status", status: 503, match: layerPath });
      expect(await cut).toMatch(/^(200, cut|50[234])$/);
      await upstream.setFault(null);
      expect(ferry.logs()).toMatch(/endpoint failed; cooling down/);
      // Once it answers again the blob streams whole, still uncached.
      const whole = await fetch(`${ferry.url}/v2/library/big/blobs/${layer.digest}`);
      expect(whole.status).toBe(200);
      expect(sha256(await whole.bytes())).toBe(layer.digest);
      expect(ferry.logs()).not.toMatch(/^\s+at /m);
    } finally {
      await upstream.setFault(null);
      rmSync(filler, { force: true });
      await ferry.stop();
    }
  }, 90_000);

  test("streamed uncached, a download holds a max_downloads place while it runs", async () => {
    const cacheDir = join(mountPoint, "d");
    mkdirSync(cacheDir, { recursive: true });
    const ferry = await startFerry({ cacheDir, cacheConfig: "max_downloads = 1", config: hubRegistry(upstream.url, 'stall_timeout = "2s"') });
    const filler = join(mountPoint, "filler-d");
    const places = async () => ((await (await fetch(`${ferry.url}/api/status`)).json()) as { downloadPlaces: { max: number; taken: number; waiting: number } }).downloadPlaces;
    try {
      fill(filler);
      const layer = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
      const other = small.blobs[0]!;
      // The first stream stalls after 1 MiB and holds the only place through its stall timeout and
      // resume. Its headers may only go out after the stall (the chunk before the last is held
      // back), so the second GET is sent once the place is taken, not once the first answered.
      await upstream.setFault({ kind: "stall", afterBytes: 1024 * 1024, match: new RegExp(layer.digest.slice(7)), times: 1 });
      const firstBody = fetch(`${ferry.url}/v2/library/big/blobs/${layer.digest}`).then(async (r) => `${r.status} ${sha256(await r.bytes())}`, () => "broken");
      await waitFor(async () => (await places()).taken === 1, { what: "the first download to take the place" });
      const second = fetch(`${ferry.url}/v2/library/five/blobs/${other.digest}`);
      await waitFor(async () => (await places()).waiting === 1, { what: "the second download to wait for the place", onTimeout: () => ferry.logs() });
      expect(await firstBody).toBe(`200 ${layer.digest}`);
      const r = await second;
      expect(r.status).toBe(200);
      expect(sha256(await r.bytes())).toBe(other.digest);
      await waitFor(async () => (await places()).taken === 0, { what: "the place to be given back" });
      // A range that ends before the blob does gives its place back too.
      const ranged = await fetch(`${ferry.url}/v2/library/big/blobs/${layer.digest}`, { headers: { Range: "bytes=0-99" } });
      expect(ranged.status).toBe(206);
      expect((await ranged.bytes()).byteLength).toBe(100);
      await waitFor(async () => (await places()).taken === 0, { what: "the ranged stream's place to be given back" });
    } finally {
      await upstream.setFault(null);
      rmSync(filler, { force: true });
      await ferry.stop();
    }
  }, 60_000);
});


