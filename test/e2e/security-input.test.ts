// Issue 5, hostile input: a bounded fuzz run of malformed requests over raw sockets (so
// nothing normalises the paths first), oversized and absurd requests, slow clients,
// redirects to private addresses, TLS, and secrets kept out of logs and answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { skopeoInspect } from "../harness/clients.ts";
import { startFerry } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { hubRegistry, OTHER_REGISTRIES_OFF } from "../harness/oci.ts";
import { rawRequest } from "../harness/raw-http.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CANARY = "ferry-fuzz-canary";
let upstream: Upstream;
let image: BuiltImage;
const scratch = mkdtempSync(join(tmpdir(), "ferry-input-"));

/** Only docker.io, pointed at the harness: no fuzzed name can reach a real registry. */
function onlyHub(extra = ""): string {
  return `${hubRegistry(upstream.url, extra)}\n${OTHER_REGISTRIES_OFF}`;
}

beforeAll(async () => {
  upstream = await startUpstream();
  image = await fiveLayer({ seed: "input" });
  await upstream.push(image, "library/five:latest");
}, 120_000);

afterAll(async () => {
  await upstream?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

const raw = rawRequest;

const rng = (() => {
  let x = 0x2545f491;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 4294967296);
})();
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const hex = (n: number) => Array.from({ length: n }, () => pick("0123456789abcdef".split(""))).join("");

const SEGMENTS = [
  "v2", "library", "five", "..", "%2e%2e", "%2E%2E", ".%2e", "%2f", "%2F..%2F", ".", "%00", "a%00b", "\\..\\", "..;", "%252e%252e",
  CANARY, `..%2f..%2f${CANARY}`, "etc", "passwd", "manifests", "blobs", "tags", "list", "_catalog", "uploads", "latest",
  `sha256:${hex(64)}`, `sha256:${hex(63)}`, `sha512:${hex(128)}`, "sha256:", "md5:abc", `sha256:${"Z".repeat(64)}`,
  "UPPER", "ghcr.io", "evil.example.com", "localhost:5000", "127.0.0.1", "a".repeat(300), "😀", "%F0%9F%98%80", "a:b", "@", "~root", "*", "$(id)",
];
const METHODS = ["GET", "GET", "GET", "HEAD", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "CONNECT", "GETT"];
const EXTRA_HEADERS = [
  "Range: bytes=0-99999999999999999999999",
  "Range: bytes=-0",
  "Range: bytes=5-1",
  "Range: bytes=0-1,2-3,4-5",
  "Range: bytes=18446744073709551615-",
  "Range: items=0-1",
  "Accept: \u0001\u0002",
  `Accept: ${"application/json,".repeat(500)}`,
  "X-Forwarded-For: not-an-ip, ../../etc",
  "Authorization: Bearer a.b.c",
  "Authorization: Basic !!!!",
  "Authorization: Negotiate xyz",
  `Host: ${"h".repeat(500)}`,
  "Content-Length: 99999999999",
  "Transfer-Encoding: chunked, chunked",
];

function fuzzRequest(): string {
  const segments = Array.from({ length: 1 + Math.floor(rng() * 7) }, () => pick(SEGMENTS));
  let path = `/${segments.join(pick(["/", "/", "/", "//"]))}`;
  if (rng() < 0.7) path = `/v2${path}`;
  if (rng() < 0.2) path += `?ns=${pick(SEGMENTS)}&n=${pick(["-1", "1e9", "abc", "10"])}&last=${pick(SEGMENTS)}`;
  const headers = Array.from({ length: Math.floor(rng() * 3) }, () => pick(EXTRA_HEADERS));
  return `${pick(METHODS)} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join("")}Connection: close\r\n\r\n`;
}

/** Files below `dir`; entries that vanish while we look (other tests' cleanup) are skipped. */
function treeOf(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const name of entries) {
      const p = join(d, name.name);
      if (name.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

describe("hostile input", () => {
  test("3000 malformed requests: no crash, no 5xx, nothing read or written outside the cache dir, RSS bounded", async () => {
    const ferry = await startFerry({ config: onlyHub() });
    try {
      const before = treeOf(scratch);
      const statuses = new Map<number, number>();
      const leaks: string[] = [];
      const dropped: string[] = [];
      const fives: string[] = [];
      const requests = Array.from({ length: 3000 }, fuzzRequest);
      for (let i = 0; i < requests.length; i += 20) {
        const batch = await Promise.all(requests.slice(i, i + 20).map((r) => raw(ferry.port, r)));
        batch.forEach((res, j) => {
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 0) dropped.push(requests[i + j]!.replace(/\r\n/g, " | ").slice(0, 160));
          if (res.status >= 500) fives.push(`${res.status} ${requests[i + j]!.split("\r\n")[0]}`);
          if (/root:x:0:0|BEGIN (RSA|EC|OPENSSH) PRIVATE KEY/.test(res.text)) leaks.push(requests[i + j]!.split("\r\n")[0]!);
        });
      }
      expect(fives).toEqual([]);
      expect(leaks).toEqual([]);
      // Bun's parser closes requests that are not HTTP (bytes outside the grammar, bad
      // framing headers) without an answer; that is a refusal too, not a crash.
      for (const d of dropped) expect({ d, unparseable: /😀|\\|Transfer-Encoding|Content-Length: 9|Accept: \u0001|Host: hhh|GETT|CONNECT|PROPFIND/.test(d) }).toEqual({ d, unparseable: true });
      // Still alive and serving.
      const ok = await fetch(`${ferry.url}/v2/library/five/manifests/latest`);
      expect(ok.status).toBe(200);
      // Nothing was created outside ferry's own dir, and no file carries the canary.
      expect(treeOf(scratch)).toEqual(before);
      expect(treeOf(ferry.dir).filter((p) => !p.startsWith(ferry.cacheDir) && !p.endsWith("ferry.log") && !p.endsWith("config.toml"))).toEqual([]);
      for (const dir of [tmpdir(), ROOT, ferry.cacheDir]) expect(treeOf(dir).filter((p) => p.includes(CANARY))).toEqual([]);
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${ferry.pid}/status`, "utf8"))?.[1]) * 1024;
      expect(rss).toBeLessThan(300 * 1024 * 1024);
      console.log("fuzz statuses:", JSON.stringify(Object.fromEntries(statuses)), "rss MiB:", Math.round(rss / 1048576));
    } finally {
      await ferry.stop();
    }
  }, 180_000);

  test("oversized URLs and headers, absurd Ranges: 4xx or a closed connection, never a crash", async () => {
    const ferry = await startFerry({ config: onlyHub() });
    try {
      const blob = image.blobs[0]!;
      await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`).then((r) => r.arrayBuffer());
      const huge = await raw(ferry.port, `GET /v2/${"a/".repeat(60_000)}manifests/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(huge.status === 0 || (huge.status >= 400 && huge.status < 500)).toBe(true);
      const bigHeader = await raw(ferry.port, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Junk: ${"j".repeat(200_000)}\r\nConnection: close\r\n\r\n`);
      expect(bigHeader.status === 0 || (bigHeader.status >= 400 && bigHeader.status < 500)).toBe(true);
      for (const range of ["bytes=0-99999999999999999999999", `bytes=${blob.size}-`, "bytes=-0", "bytes=9-2", "bytes=0-1,3-4", "bytes=--1"]) {
        const r = await fetch(`${ferry.url}/v2/library/five/blobs/${blob.digest}`, { headers: { Range: range } });
        expect({ range, ok: [200, 206, 416].includes(r.status) }).toEqual({ range, ok: true });
        await r.arrayBuffer();
      }
      expect((await fetch(`${ferry.url}/healthz`)).status).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("a slow-loris client is cut off after server.idle_timeout", async () => {
    // startFerry writes [server] itself, so this one gets a config file of its own.
    const port = await freePort();
    const dir = mkdtempSync(join(scratch, "slow-"));
    writeFileSync(join(dir, "c.toml"), `[server]\nlisten = "127.0.0.1:${port}"\nidle_timeout = "2s"\n[cache]\ndir = "${join(dir, "data")}"\n${onlyHub()}`);
    const proc = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/main.ts"), "serve", "--config", join(dir, "c.toml")], { stdout: "ignore", stderr: "ignore" });
    try {
      await waitFor(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok), { what: "ferry to listen" });
      // How long until ferry closes a connection whose client wrote `first` and then went silent.
      const closedAfter = (first: string) =>
        new Promise<number>((done, fail) => {
          const started = performance.now();
          const stop = setTimeout(() => fail(new Error("connection still open after 20 s")), 20_000);
          Bun.connect({
            hostname: "127.0.0.1",
            port,
            socket: {
              open: (s) => void s.write(first),
              data() {},
              close() {
                clearTimeout(stop);
                done(performance.now() - started);
              },
            },
          });
        });
      const [afterRequest, midHeaders] = await Promise.all([
        // A client that sent a request, read the answer and now holds the connection open.
        closedAfter("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        // A slow-loris client: headers that never finish.
        closedAfter("GET /v2/ HTTP/1.1\r\nHost: x\r\n"),
      ]);
      // idle_timeout (2 s) governs a silent connection: not before it, and well before Bun's
      // own ~12 s limit (its idle timer ticks in steps, so up to about twice the setting).
      expect(afterRequest).toBeGreaterThanOrEqual(1_900);
      expect(afterRequest).toBeLessThan(5_500);
      // Bun's HTTP parser drops a connection whose headers never finish after ~12 s,
      // whatever idle_timeout says.
      expect(midHeaders).toBeLessThan(15_000);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 30_000);
});

describe("redirects, TLS and secrets", () => {
  test("a redirect to 127.0.0.1 is refused without allow_private_redirects", async () => {
    const ferry = await startFerry({ config: onlyHub().replace("allow_private_redirects = true", "allow_private_redirects = false") });
    try {
      upstream.clearLog();
      const r = await fetch(`${ferry.url}/v2/library/five/blobs/${image.blobs[0]!.digest}`);
      expect(r.status).toBe(503);
      expect(((await r.json()) as { errors: { message: string }[] }).errors[0]!.message).toContain("non-public address 127.0.0.1 refused");
      expect(upstream.count({ server: "cdn" })).toBe(0);
    } finally {
      await ferry.stop();
    }
  });

  test("a redirect to 169.254.169.254 is refused (checked in a private network namespace)", async () => {
    const probe = Bun.spawn(["unshare", "-n", "sh", "-c", `ip link set lo up && exec ${join(ROOT, "node_modules/.bin/bun")} ${join(import.meta.dir, "fixtures/redirect-probe.ts")}`], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(probe.stdout).text();
    expect(await probe.exited).toBe(0);
    const outcome = JSON.parse(out.trim().split("\n").at(-1)!) as { followed: boolean; error?: string };
    expect(outcome.followed).toBe(false);
    expect(outcome.error).toContain("non-public address 169.254.169.254 refused");
  }, 30_000);

  test("HTTPS and HTTP at once", async () => {
    const dir = mkdtempSync(join(scratch, "tls-"));
    const gen = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
    expect(gen.exitCode).toBe(0);
    const tlsPort = await freePort();
    const httpPort = await freePort();
    writeFileSync(join(dir, "c.toml"), `[server]\nlisten = "127.0.0.1:${httpPort}"\ntls_listen = "127.0.0.1:${tlsPort}"\ntls_cert = "${join(dir, "cert.pem")}"\ntls_key = "${join(dir, "key.pem")}"\n[cache]\ndir = "${join(dir, "data")}"\n${onlyHub()}`);
    const proc = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/main.ts"), "serve", "--config", join(dir, "c.toml")], { stdout: "ignore", stderr: "ignore" });
    try {
      for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${httpPort}/healthz`).then(() => true, () => false)); i++) await Bun.sleep(50);
      const ca = readFileSync(join(dir, "cert.pem"), "utf8");
      const https = await fetch(`https://127.0.0.1:${tlsPort}/v2/library/five/manifests/latest`, { tls: { ca } });
      expect(https.status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${httpPort}/v2/`)).status).toBe(200);
      // A real client verifying the certificate.
      const certDir = join(dir, "certs");
      require("node:fs").mkdirSync(certDir);
      writeFileSync(join(certDir, "ca.crt"), ca);
      const s = await skopeoInspect(`docker://127.0.0.1:${tlsPort}/library/five:latest`, ["--raw", "--cert-dir", certDir]);
      expect({ code: s.code, err: s.code ? s.stderr : "" }).toEqual({ code: 0, err: "" });
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 60_000);

  test("credentials, tokens and S3 secrets appear in no log line, error body or status page", async () => {
    const secrets = ["hunter2-upstream-password", "s3-secret-access-key-value", "t".repeat(40), "static-token-abcdef0123456789"];
    const htpasswd = join(scratch, "htpasswd-secrets");
    writeFileSync(htpasswd, `ops:${await Bun.password.hash("ops-password-9876", { algorithm: "bcrypt", cost: 4 })}\n`);
    const ferry = await startFerry({
      config: [
        `[auth]\nhtpasswd = "${htpasswd}"\ntokens = ["${secrets[3]}"]\ntoken_secret = "${secrets[2]}"`,
        `[s3]\nendpoint = "http://127.0.0.1:1"\nbucket = "b"\naccess_key_id = "AKIAFERRYTEST"\nsecret_access_key = "${secrets[1]}"`,
        onlyHub(`username = "pusher"\npassword = "${secrets[0]}"\nanonymous = true`),
      ].join("\n"),
    });
    try {
      const bodies: string[] = [];
      // Upstream refuses the wrong password; the S3 store is unreachable; tokens are issued.
      for (const path of ["/v2/library/five/manifests/latest", `/v2/library/five/blobs/${image.blobs[0]!.digest}`, "/v2/_catalog"]) {
        bodies.push(await (await fetch(ferry.url + path, { headers: { Authorization: `Bearer ${secrets[3]}` } })).text());
      }
      bodies.push(await (await fetch(`${ferry.url}/token?scope=repository:library/five:pull`, { headers: { Authorization: `Basic ${btoa("ops:ops-password-9876")}` } })).text());
      for (const path of ["/api/status", "/api/repositories", "/metrics", "/readyz"]) {
        bodies.push(await (await fetch(ferry.url + path, { headers: { Authorization: `Basic ${btoa("ops:ops-password-9876")}` } })).text());
      }
      // Access lines are written after the response: wait for the last request's.
      expect(await ferry.waitForLog('"method":"GET","path":"/readyz"', 10_000)).toBe(true);
      const everything = bodies.join("\n") + ferry.logs();
      for (const s of [...secrets, "ops-password-9876"]) expect({ secret: s, found: everything.includes(s) }).toEqual({ secret: s, found: false });
      expect(everything).not.toContain(btoa(`pusher:${secrets[0]}`));
    } finally {
      await ferry.stop();
    }
  }, 60_000);
});
