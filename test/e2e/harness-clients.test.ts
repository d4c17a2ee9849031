/**
 * Self-test of test/harness/clients.ts: real docker/ctr/podman pull THROUGH a mirror (a plain
 * Debian docker-registry on loopback), and with the mirror stopped every client fails fast
 * with "connection refused" on loopback addresses only (nothing escapes the machine).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import {
  clientsAvailable,
  closedPort,
  ctrPull,
  podmanPull,
  skopeoCopy,
  skopeoInspect,
  startContainerd,
  startDockerd,
  type ContainerdHandle,
  type DockerdHandle,
} from "../harness/clients.ts";

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

interface Registry {
  port: number;
  url: string;
  logFile: string;
  proc: Subprocess | null;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** access-log lines appended since `from` (byte offset) */
  logSince(from: number): string[];
  logSize(): number;
}

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

/** Plain `docker-registry` (distribution 2.8), no auth, filesystem storage, loopback only. */
async function makeRegistry(dir: string): Promise<Registry> {
  const port = await freePort();
  const logFile = path.join(dir, "registry.log");
  const cfg = path.join(dir, "config.yml");
  fs.writeFileSync(
    cfg,
    [
      "version: 0.1",
      "log:",
      "  level: info",
      "  accesslog:",
      "    disabled: false",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${path.join(dir, "data")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  const reg: Registry = {
    port,
    url: `http://127.0.0.1:${port}`,
    logFile,
    proc: null,
    async start() {
      const fd = fs.openSync(logFile, "a");
      reg.proc = Bun.spawn(["docker-registry", "serve", cfg], { stdin: "ignore", stdout: fd, stderr: fd });
      fs.closeSync(fd);
      for (let i = 0; i < 100; i++) {
        try {
          const r = await fetch(`${reg.url}/v2/`, { signal: AbortSignal.timeout(1000) });
          if (r.status === 200) return;
        } catch {
          /* not yet */
        }
        if (reg.proc.exitCode !== null) break;
        await Bun.sleep(100);
      }
      throw new Error(`registry did not start:\n${fs.readFileSync(logFile, "utf8").slice(-2000)}`);
    },
    async stop() {
      const p = reg.proc;
      if (!p) return;
      reg.proc = null;
      p.kill("SIGTERM");
      const done = await Promise.race([p.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
      if (!done) {
        p.kill("SIGKILL");
        await Promise.race([p.exited, Bun.sleep(5000)]);
      }
    },
    logSize: () => fs.statSync(logFile).size,
    logSince(from) {
      const buf = fs.readFileSync(logFile);
      return buf.subarray(from).toString("utf8").split("\n").filter((l) => /"(GET|HEAD|POST|PUT|PATCH) \/v2\//.test(l));
    },
  };
  await reg.start();
  return reg;
}

/** Minimal OCI image layout: one real tar.gz layer with a text file, amd64/linux config. */
function makeOciLayout(dir: string): { manifestDigest: string; configDigest: string } {
  const content = path.join(dir, "content");
  const layout = path.join(dir, "layout");
  fs.mkdirSync(content, { recursive: true });
  fs.mkdirSync(path.join(layout, "blobs", "sha256"), { recursive: true });
  fs.writeFileSync(path.join(content, "hello.txt"), "hello from the ferry harness self-test\n");
  const tarFile = path.join(dir, "layer.tar");
  const t = Bun.spawnSync(["tar", "--owner=0", "--group=0", "--mtime=@0", "-C", content, "-cf", tarFile, "hello.txt"]);
  if (t.exitCode !== 0) throw new Error(`tar failed: ${t.stderr.toString()}`);
  const tar = fs.readFileSync(tarFile);
  const gz = Bun.gzipSync(new Uint8Array(tar));
  const put = (data: Uint8Array | string) => {
    const d = sha256(data);
    fs.writeFileSync(path.join(layout, "blobs", "sha256", d), data);
    return { digest: `sha256:${d}`, size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength };
  };
  const layer = put(gz);
  const config = put(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/hello.txt"] },
      rootfs: { type: "layers", diff_ids: [`sha256:${sha256(tar)}`] },
    }),
  );
  const manifest = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
    }),
  );
  fs.writeFileSync(
    path.join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, annotations: { "org.opencontainers.image.ref.name": "latest" } }],
    }),
  );
  fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  return { manifestDigest: manifest.digest, configDigest: config.digest };
}

/** Every "dial tcp ADDR" in the output must be a loopback address. */
function dialTargets(text: string): string[] {
  return [...text.matchAll(/dial tcp ([^\s:]+|\[[^\]]+\]):(\d+)/g)].map((m) => `${m[1]}:${m[2]}`);
}

function expectRefusedOnLoopbackOnly(label: string, out: string): void {
  expect(out, `${label}: expected a connection-refused error`).toMatch(/connection refused/);
  const targets = dialTargets(out);
  expect(targets.length, `${label}: no dial target found in output`).toBeGreaterThan(0);
  for (const t of targets) expect(t, `${label}: dialed non-loopback ${t}`).toMatch(/^(127\.\d+\.\d+\.\d+|\[::1\]):\d+$/);
}

describe("harness clients: pull through a mirror, never escape", () => {
  let work = "";
  let reg: Registry;
  let expected: { manifestDigest: string; configDigest: string };
  let dockerd: DockerdHandle | null = null;
  let containerd: ContainerdHandle | null = null;
  const t0 = performance.now();

  beforeAll(async () => {
    // Diagnostics only: missing clients make the tests FAIL (with this reason), never skip.
    const avail = clientsAvailable();
    console.log("clientsAvailable:", JSON.stringify(avail));
    work = fs.mkdtempSync("/tmp/fcl-selftest-");
    reg = await makeRegistry(work);
    expected = makeOciLayout(work);
    const cp = await skopeoCopy(`oci:${path.join(work, "layout")}:latest`, `docker://127.0.0.1:${reg.port}/library/hello:latest`);
    if (cp.code !== 0) throw new Error(`skopeo copy failed: ${cp.stderr}`);
    expect(cp.digest).toBe(expected.manifestDigest);
    const ins = await skopeoInspect(`docker://127.0.0.1:${reg.port}/library/hello:latest`);
    expect(ins.code).toBe(0);
    expect((ins.json as { Digest?: string }).Digest).toBe(expected.manifestDigest);
    // One daemon pair for the docker tests (started here so its cost is visible separately).
    const s = performance.now();
    dockerd = await startDockerd({ mirrors: [reg.url] });
    console.log(`dockerd+containerd ready in ${Math.round(performance.now() - s)}ms`);
    containerd = await startContainerd();
  }, 60_000);

  afterAll(async () => {
    await dockerd?.stop();
    await containerd?.stop();
    await reg?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    // Nothing of ours may survive: no temp dirs, no daemons.
    const left = fs.readdirSync("/tmp").filter((d) => /^fcl-(ctd|dkd|ctr|pod|sko|run)-/.test(d));
    expect(left).toEqual([]);
    console.log(`total ${Math.round(performance.now() - t0)}ms`);
  }, 60_000);

  test("docker pull hello via registry-mirrors", async () => {
    const d = dockerd!;
    const from = reg.logSize();
    const r = await d.pull("hello");
    console.log(`docker pull: code=${r.code} ${r.durationMs}ms digest=${r.digest}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.digest).toBe(expected.manifestDigest);
    const img = await d.imageInspect("hello");
    expect(img?.Id).toBe(expected.configDigest);
    expect(img?.RepoDigests ?? []).toContain(`hello@${expected.manifestDigest}`);
    const lines = reg.logSince(from);
    expect(lines.some((l) => l.includes("/v2/library/hello/manifests/") && l.includes("docker/20.10"))).toBe(true);
    expect(lines.some((l) => l.includes("/v2/library/hello/blobs/sha256:") && l.includes("docker/20.10"))).toBe(true);
  }, 60_000);

  test("ctr images pull --hosts-dir docker.io/library/hello:latest", async () => {
    const from = reg.logSize();
    const r = await ctrPull({ ref: "docker.io/library/hello:latest", hosts: { "docker.io": reg.url }, containerd: containerd! });
    console.log(`ctr pull: code=${r.code} ${r.durationMs}ms digest=${r.digest} requests=${r.requests.length}`);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.digest).toBe(expected.manifestDigest);
    expect(r.hostsToml["docker.io"]).toContain(`server = "http://127.0.0.1:${await closedPort()}"`);
    // containerd tells the mirror which upstream it meant: ?ns=docker.io
    expect(r.requests.length).toBeGreaterThan(0);
    for (const q of r.requests) expect(q.url).toStartWith(`${reg.url}/v2/library/hello/`);
    expect(r.requests.every((q) => q.url.includes("ns=docker.io"))).toBe(true);
    const lines = reg.logSince(from);
    expect(lines.some((l) => l.includes("/v2/library/hello/manifests/") && l.includes("?ns=docker.io") && l.includes("containerd/"))).toBe(true);
  }, 60_000);

  test("podman pull docker.io/library/hello:latest via registries.conf mirror", async () => {
    const from = reg.logSize();
    const r = await podmanPull({
      ref: "docker.io/library/hello:latest",
      registries: [{ prefix: "docker.io", mirrors: [{ location: `127.0.0.1:${reg.port}`, insecure: true }] }],
    });
    console.log(`podman pull: code=${r.code} ${r.durationMs}ms digest=${r.digest}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.digest).toBe(expected.manifestDigest);
    expect(r.imageId).toBe(expected.configDigest.slice("sha256:".length));
    expect(r.registriesConf).toContain(`location = "127.0.0.1:${await closedPort()}"`);
    const lines = reg.logSince(from);
    expect(lines.some((l) => l.includes("/v2/library/hello/manifests/") && l.includes("containers/"))).toBe(true);
  }, 60_000);

  test("mirror stopped: every client fails fast with connection refused on loopback", async () => {
    await reg.stop();
    const d = dockerd!;

    const dk = await d.pull("hello:other", { timeoutMs: 30_000 });
    console.log(`docker (mirror down): code=${dk.code} ${dk.durationMs}ms`);
    expect(dk.code).not.toBe(0);
    expect(dk.timedOut).toBe(false);
    expect(dk.durationMs).toBeLessThan(15_000);
    // the daemon log holds both attempts: mirror, then registry-1.docker.io -> 127.0.0.1:443
    expectRefusedOnLoopbackOnly("docker", dk.stderr + d.logs());
    expect(d.logs()).toMatch(/registry-1\.docker\.io\/v2\/\\?": dial tcp 127\.0\.0\.1:443: connect: connection refused/);

    const ct = await ctrPull({ ref: "docker.io/library/hello:other", hosts: { "docker.io": reg.url }, containerd: containerd!, timeoutMs: 30_000 });
    console.log(`ctr (mirror down): code=${ct.code} ${ct.durationMs}ms`);
    expect(ct.code).not.toBe(0);
    expect(ct.timedOut).toBe(false);
    expect(ct.durationMs).toBeLessThan(15_000);
    expectRefusedOnLoopbackOnly("ctr", ct.stderr);
    expect(ct.stderr).toContain(`dial tcp 127.0.0.1:${await closedPort()}: connect: connection refused`);

    const pm = await podmanPull({
      ref: "docker.io/library/hello:other",
      registries: [{ prefix: "docker.io", mirrors: [{ location: `127.0.0.1:${reg.port}`, insecure: true }] }],
      timeoutMs: 30_000,
    });
    console.log(`podman (mirror down): code=${pm.code} ${pm.durationMs}ms`);
    expect(pm.code).not.toBe(0);
    expect(pm.timedOut).toBe(false);
    expect(pm.durationMs).toBeLessThan(15_000); // c/image retries 3x with 1s pauses
    expectRefusedOnLoopbackOnly("podman", pm.stderr);

    // A client that resolves the real name itself: only /etc/hosts -> 127.0.0.1 stands in the way.
    const sk = await skopeoInspect("docker://docker.io/library/hello:latest", ["--retry-times", "0"], { timeoutMs: 30_000 });
    console.log(`skopeo docker.io (no mirror): code=${sk.code} ${sk.durationMs}ms`);
    expect(sk.code).not.toBe(0);
    expectRefusedOnLoopbackOnly("skopeo", sk.stderr);
  }, 90_000);
});
