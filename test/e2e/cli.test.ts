// Issue 6, the command line: check, warm, prune and SIGHUP reload, run as real processes
// against a real upstream, Redis and S3.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { ferryCli, startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, multiArch, type BuiltImage } from "../harness/images.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startS3, type S3Server } from "../harness/s3.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, OTHER_REGISTRIES_OFF, sha256 } from "../harness/oci.ts";

const ROOT = resolve(import.meta.dir, "../..");
let upstream: Upstream;
let redis: RedisServer;
let s3: S3Server;
let five: BuiltImage;
let multi: BuiltImage;
const scratch = mkdtempSync(join(tmpdir(), "ferry-cli-"));

function writeConfig(name: string, body: string): string {
  const path = join(scratch, name);
  writeFileSync(path, body);
  return path;
}

beforeAll(async () => {
  // s3rver, not Ceph's radosgw: check and prune --s3-orphans need only Head/Put/List/Delete,
  // so its faster start wins; prune's abort of stale multipart uploads is tested on RGW (s3-tier.test.ts).
  [upstream, redis, s3] = await Promise.all([startUpstream(), startRedis(), startS3({ bucket: "cli" })]);
  five = await fiveLayer({ seed: "cli" });
  multi = await multiArch({ seed: "cli" });
  await upstream.push(five, "library/five:latest");
  await upstream.push(multi, "library/multi:latest");
}, 120_000);

afterAll(async () => {
  await Promise.all([upstream?.stop(), redis?.dispose(), s3?.stop()]);
  rmSync(scratch, { recursive: true, force: true });
});

describe("ferry check", () => {
  test("every probe passes: cache dir, Redis, S3, each endpoint", async () => {
    const config = writeConfig(
      "check-ok.toml",
      `[cache]\ndir = "${join(scratch, "check-cache")}"\n[redis]\nurl = "${redis.url}"\n[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\n${OTHER_REGISTRIES_OFF}\n`,
    );
    const r = await ferryCli(["check", "--config", config]);
    expect(r.stdout).toMatch(/^cache\s+\S+\s+ok\s+writable$/m);
    expect(r.stdout).toMatch(/^redis\s+redis:\/\/127\.0\.0\.1:\d+\s+ok\s+PING/m);
    expect(r.stdout).toMatch(/^s3\s+.*bucket cli\s+ok/m);
    expect(r.stdout).toMatch(new RegExp(`^registry docker.io\\s+${upstream.url.replace(/[.]/g, "\\.")}\\s+ok`, "m"));
    expect(r.stdout).toContain("all 4 checks passed");
    expect(r.code).toBe(0);
  }, 30_000);

  test("failures are named and the exit code says so; an invalid config is exit 2 naming the key", async () => {
    const closed = await freePort();
    const config = writeConfig("check-bad.toml", `[cache]\ndir = "${join(scratch, "check-cache")}"\n[redis]\nurl = "redis://127.0.0.1:${closed}"\n[[registry]]\nname = "docker.io"\nendpoints = ["http://127.0.0.1:${closed}", "${upstream.url}"]\n${OTHER_REGISTRIES_OFF}\n`);
    const r = await ferryCli(["check", "--config", config]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^redis\s+\S+\s+FAIL/m);
    expect(r.stdout).toMatch(new RegExp(`^registry docker.io\\s+http://127\\.0\\.0\\.1:${closed}\\s+FAIL`, "m"));
    expect(r.stdout).toContain("2 of 4 checks failed");
    const invalid = await ferryCli(["check", "--config", writeConfig("check-invalid.toml", `[cache]\nmax_size = "a lot"\n`)]);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain("cache.max_size");
  }, 30_000);
});

describe("ferry warm and prune", () => {
  let ferry: FerryProcess;
  let config: string;

  beforeAll(async () => {
    ferry = await startFerry({ config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n${OTHER_REGISTRIES_OFF}` });
    config = writeConfig("warm.toml", `[server]\nlisten = "${ferry.host}"\n[cache]\ndir = "${ferry.cacheDir}"\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\n${OTHER_REGISTRIES_OFF}\n`);
  }, 30_000);
  afterAll(async () => {
    await ferry?.stop();
  });

  test("warm pre-fetches every blob (one platform when asked); later pulls are cache hits", async () => {
    upstream.clearLog();
    const list = writeConfig("images.txt", "# warm these\nfive\n");
    const r = await ferryCli(["warm", "--config", config, "--file", list, "docker.io/library/multi:latest", "--platform", "linux/arm64/v8"]);
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
    expect(r.stdout).toMatch(/✔ five: 6 blobs/);
    expect(r.stdout).toMatch(/✔ docker.io\/library\/multi:latest: 2 blobs/); // arm64: one layer + config
    expect(r.stdout).toContain("2 of 2 images warmed");
    for (const b of five.blobs) expect(upstream.count({ server: "cdn", method: "GET", pathIncludes: b.digest.slice(7) })).toBe(1);
    const amd64 = multi.manifests.find((m) => m.platform?.architecture === "amd64")!;
    expect(upstream.count({ server: "cdn", pathIncludes: amd64.layers[0]!.digest.slice(7) })).toBe(0);
    for (const b of five.blobs) {
      const hit = await fetch(`${ferry.url}/v2/library/five/blobs/${b.digest}`);
      expect(hit.headers.get("x-ferry-cache")).toBe("hit");
      await hit.arrayBuffer();
    }
    const again = await ferryCli(["warm", "--config", config, "five"]);
    expect(again.stdout).toContain("0 fetched upstream");
    const missing = await ferryCli(["warm", "--config", config, "library/nope:1"]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/✘ library\/nope:1: manifest .* HTTP 404/);
  }, 60_000);

  test("warm follows an index nested in an index, and skips non-distributable layers", async () => {
    const m = five.manifests[0]!;
    const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    // Pushed straight to distribution (a real registry: it checks what an index lists exists).
    const put = async (repo: string, ref: string, mediaType: string, body: Uint8Array) => {
      const token = await upstream.token(`repository:${repo}:pull,push`, { username: "pusher", password: "pushpass" });
      const r = await fetch(`${upstream.registryUrl}/v2/${repo}/manifests/${ref}`, { method: "PUT", headers: { Authorization: `Bearer ${token}`, "Content-Type": mediaType }, body });
      if (r.status !== 201) throw new Error(`PUT ${repo}:${ref}: ${r.status} ${await r.text()}`);
      return { mediaType, digest: sha256(body), size: body.byteLength };
    };
    const image = { mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { os: "linux", architecture: "amd64" } };
    const manifestBody = new Uint8Array(await (await fetch(`${upstream.url}/v2/library/five/manifests/${m.digest}`, { headers: { Accept: m.mediaType, Authorization: `Bearer ${await upstream.token("repository:library/five:pull")}` } })).arrayBuffer());
    // In library/five, whose blobs distribution already holds (blobs are per repository).
    const inner = await put("library/five", "nested-inner", "application/vnd.oci.image.index.v1+json", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [image] }));
    await put("library/five", "nested", "application/vnd.oci.image.index.v1+json", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [{ ...inner, platform: { os: "linux", architecture: "amd64" } }] }));
    // A Windows-style image: its base layer lives elsewhere (urls) and registries don't serve it.
    const parsed = JSON.parse(new TextDecoder().decode(manifestBody)) as { config: unknown; layers: unknown[] };
    const foreign = { mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", digest: `sha256:${"f".repeat(64)}`, size: 1234, urls: ["https://example.com/base-layer.tar.gz"] };
    await put("library/five", "winlike", "application/vnd.docker.distribution.manifest.v2+json", json({ schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.v2+json", config: parsed.config, layers: [foreign, ...parsed.layers] }));
    const r = await ferryCli(["warm", "--config", config, "five:nested", "five:winlike"]);
    expect({ code: r.code, err: r.stderr, out: r.stdout }).toMatchObject({ code: 0, err: "" });
    expect(r.stdout).toMatch(/✔ five:nested: 6 blobs/);
    expect(r.stdout).toMatch(/✔ five:winlike: 6 blobs.*1 non-distributable layer skipped/);
    expect(r.stdout).toContain("2 of 2 images warmed");
    expect(upstream.count({ pathIncludes: "f".repeat(64) })).toBe(0);
  }, 60_000);

  test("prune trims the local tier by size and by age, and --dry-run changes nothing", async () => {
    const total = five.blobs.reduce((s, b) => s + b.size, 0);
    const dry = await ferryCli(["prune", "--config", config, "--max-size", "0", "--dry-run"]);
    expect(dry.stdout).toMatch(/would remove \d+ blobs/);
    for (const b of five.blobs) expect(existsSync(join(ferry.cacheDir, "blobs/docker.io/sha256", b.digest.slice(7, 9), b.digest.slice(7)))).toBe(true);
    const bySize = await ferryCli(["prune", "--config", config, "--max-size", String(Math.floor(total / 2))]);
    expect(bySize.code).toBe(0);
    expect(bySize.stdout).toMatch(/removed [1-9]\d* blobs .* to fit/);
    // Everything is made an hour old rather than waited for: blob mtimes (last use) and the
    // database's times. The running ferry writes last-pull times behind (every few seconds):
    // wait until it has (/api/repositories shows pending ones), or a late write makes a tag young.
    const metaPath = join(ferry.cacheDir, "meta.sqlite");
    await waitFor(
      async () => {
        const { repositories } = (await (await fetch(`${ferry.url}/api/repositories`)).json()) as { repositories: { registry: string; repository: string; tags: { tag: string; pulledAt: string | null }[] }[] };
        const db = new Database(metaPath);
        try {
          const row = db.query<{ pulled_at: number | null }, [string, string, string]>("SELECT pulled_at FROM tags WHERE registry = ? AND repository = ? AND tag = ?");
          return repositories.length > 0 && repositories.every((r) => r.tags.every((t) => (row.get(r.registry, r.repository, t.tag)?.pulled_at ?? null) === (t.pulledAt ? Date.parse(t.pulledAt) : null)));
        } finally {
          db.close();
        }
      },
      { timeoutMs: 20_000, what: "ferry to write its pending last-pull times" },
    );
    const hourMs = 3_600_000;
    const db = new Database(metaPath);
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      db.query("UPDATE tags SET checked_at = checked_at - ?1, pulled_at = pulled_at - ?1").run(hourMs);
      db.query("UPDATE manifests SET created_at = created_at - ?1").run(hourMs);
    } finally {
      db.close();
    }
    const hourAgo = (Date.now() - hourMs) / 1000;
    const blobsDir = join(ferry.cacheDir, "blobs");
    for (const e of readdirSync(blobsDir, { recursive: true, withFileTypes: true })) if (e.isFile()) utimesSync(join(e.parentPath, e.name), hourAgo, hourAgo);
    const byAge = await ferryCli(["prune", "--config", config, "--older-than", "30m"]);
    expect(byAge.stdout).toMatch(/removed [1-9]\d* blobs/);
    expect(byAge.stdout).toMatch(/metadata: removed [1-9]\d* tags and \d+ manifests/); // five:latest, multi:latest
    const left = five.blobs.filter((b) => existsSync(join(ferry.cacheDir, "blobs/docker.io/sha256", b.digest.slice(7, 9), b.digest.slice(7))));
    expect(left).toEqual([]);
    // The running ferry takes a pruned blob as a miss and fetches it again.
    const refetched = await fetch(`${ferry.url}/v2/library/five/blobs/${five.blobs[0]!.digest}`);
    expect(refetched.status).toBe(200);
    await refetched.arrayBuffer();
  }, 60_000);

  test("prune --s3-orphans removes shared blobs no manifest refers to, and keeps the rest", async () => {
    const shared = `[redis]\nurl = "${redis.url}"\n[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\n`;
    const replica = await startFerry({ config: `${shared}[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n${OTHER_REGISTRIES_OFF}` });
    try {
      await fetch(`${replica.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } }).then((r) => r.arrayBuffer());
      for (const b of five.blobs) await fetch(`${replica.url}/v2/library/five/blobs/${b.digest}`).then((r) => r.arrayBuffer());
      const orphan = `blobs/docker.io/sha256/ab/${"ab".repeat(32)}`;
      await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: orphan, Body: "left behind" }));
      const cfg = writeConfig("prune-s3.toml", `[cache]\ndir = "${replica.cacheDir}"\n${shared}`);
      const r = await ferryCli(["prune", "--config", cfg, "--s3-orphans", "--grace", "0s"]);
      expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
      expect(r.stdout).toMatch(/s3: removed 1 orphaned blobs .*kept 6/);
      const keys = await s3.listKeys();
      expect(keys).not.toContain(orphan);
      expect(keys.length).toBe(five.blobs.length);
    } finally {
      await replica.stop();
    }
  }, 60_000);
});

describe("SIGHUP", () => {
  test("reloads the config without dropping connections; a bad config keeps the old one", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(scratch, "hup-"));
    const configPath = join(dir, "config.toml");
    const base = `[server]\nlisten = "127.0.0.1:${port}"\n[cache]\ndir = "${join(dir, "data")}"\n`;
    const hub = (extra: string) => `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\n${extra}\n${OTHER_REGISTRIES_OFF}\n`;
    writeFileSync(configPath, base + hub(""));
    // Output goes to a file, so the test can wait for a log line while ferry runs.
    const logPath = join(dir, "ferry.log");
    const logs = () => readFileSync(logPath, "utf8");
    const logged = (...parts: string[]) => logs().split("\n").some((line) => parts.every((p) => line.includes(p)));
    const logFd = openSync(logPath, "a");
    const proc = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/main.ts"), "serve", "--config", configPath], { stdout: logFd, stderr: logFd });
    closeSync(logFd);
    const url = `http://127.0.0.1:${port}`;
    try {
      for (let i = 0; i < 100 && !(await fetch(`${url}/healthz`).then(() => true, () => false)); i++) await Bun.sleep(50);
      expect((await fetch(`${url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } })).status).toBe(200);
      // A response already under way survives the reload (and its connection is not dropped).
      const inFlight = await fetch(`${url}/v2/library/five/blobs/${five.blobs[0]!.digest}`);
      writeFileSync(configPath, base + hub('deny = ["library/five"]'));
      proc.kill("SIGHUP");
      let status = 200;
      for (let i = 0; i < 40 && status === 200; i++) {
        await Bun.sleep(50);
        status = (await fetch(`${url}/v2/library/five/manifests/latest`)).status;
      }
      expect(status).toBe(403);
      expect(inFlight.status).toBe(200);
      expect(sha256(await inFlight.arrayBuffer())).toBe(five.blobs[0]!.digest);
      // An invalid config, and one that changes a restart-only key, are refused.
      writeFileSync(configPath, base + hub('deny = ["library/five"]') + "[cache\n");
      proc.kill("SIGHUP");
      await waitFor(() => logged("config reload failed", "not valid TOML"), { what: "the invalid config's reload to be refused", onTimeout: logs });
      writeFileSync(configPath, base.replace(`dir = "${join(dir, "data")}"`, `dir = "${join(dir, "elsewhere")}"`) + hub(""));
      proc.kill("SIGHUP");
      await waitFor(() => logged("config reload failed", "need a restart: cache.dir"), { what: "the restart-only change's reload to be refused", onTimeout: logs });
      expect((await fetch(`${url}/v2/library/five/manifests/latest`)).status).toBe(403);
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
    expect(logs()).toContain("config reloaded");
    expect(logs()).toContain("not valid TOML");
    expect(logs()).toContain("need a restart: cache.dir");
  }, 60_000);
});

describe("SIGHUP keeps state", () => {
  test("a reload keeps the token secret, cooldowns, limiter counters and downloads in flight", async () => {
    const htpasswd = join(scratch, "htpasswd-hup");
    writeFileSync(htpasswd, `alice:${await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 4 })}\n`);
    const big = await (await import("../harness/images.ts")).bigLayer({ seed: "hup-state", sizeMiB: 4 });
    await upstream.push(big, "library/hupbig:latest");
    const layer = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    // No token_secret and no Redis: the secret is this process's own.
    const config = () =>
      `[auth]\nhtpasswd = "${htpasswd}"\n[limits]\nbytes = "${2 * layer.size}/1h"\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\nanonymous = true\nstall_timeout = "3s"\n[[registry]]\nname = "limited.test"\nendpoints = ["${upstream.url}"]\nanonymous = true\ncooldown = "5m"\n${OTHER_REGISTRIES_OFF}\n`;
    const ferry = await startFerry({ config: config() });
    try {
      const tokenRes = await fetch(`${ferry.url}/token?service=ferry&scope=repository:library/five:pull`, { headers: { Authorization: `Basic ${btoa("alice:wonderland")}` } });
      const { token } = (await tokenRes.json()) as { token: string };
      const asAlice = { Authorization: `Bearer ${token}`, Accept: ACCEPT };
      expect((await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: asAlice })).status).toBe(200);
      // limited.test's only tier answers 429: it rests for `cooldown` (docker.io's tier, the same server, does not).
      await upstream.setFault({ kind: "status", status: 429, match: /\/manifests\/limited$/, server: "front", times: 1 });
      expect((await fetch(`${ferry.url}/v2/limited.test/library/five/manifests/limited`)).status).toBe(429);
      const coolingDown = async () => {
        const status = (await (await fetch(`${ferry.url}/api/status`, { headers: asAlice })).json()) as { registries: { registry: string; endpoints: { coolingDown: boolean }[] }[] };
        return status.registries.find((r) => r.registry === "limited.test")!.endpoints[0]!.coolingDown;
      };
      expect(await coolingDown()).toBe(true);
      // A download in flight: the CDN stalls after 1 MiB (resumed after stall_timeout).
      upstream.clearLog();
      await upstream.setFault({ kind: "stall", afterBytes: 1024 * 1024, match: new RegExp(layer.digest.slice(7)), times: 1 });
      const first = await fetch(`${ferry.url}/v2/library/hupbig/blobs/${layer.digest}`) // anonymous pulls are allowed;
      expect(first.status).toBe(200);
      const firstBody = first.bytes();
      writeFileSync(join(ferry.dir, "config.toml"), readFileSync(join(ferry.dir, "config.toml"), "utf8").replace("anonymous = true", 'anonymous = true\ndeny = ["library/secret"]'));
      process.kill(ferry.pid, "SIGHUP");
      expect(await ferry.waitForLog("config reloaded", 10_000)).toBe(true);
      // The token still works (same secret); the tier still rests.
      const afterReload = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: asAlice });
      expect({ status: afterReload.status, body: afterReload.status === 200 ? "" : await afterReload.text() }).toEqual({ status: 200, body: "" });
      expect(await coolingDown()).toBe(true);
      // The second client joins the download in flight instead of starting another one.
      const second = await fetch(`${ferry.url}/v2/library/hupbig/blobs/${layer.digest}`) // anonymous pulls are allowed;
      expect(second.status).toBe(200);
      expect(sha256(await second.arrayBuffer())).toBe(layer.digest);
      expect(sha256(await firstBody)).toBe(layer.digest);
      expect(upstream.count({ method: "GET", server: "front", pathIncludes: `/blobs/${layer.digest}`, status: [200, 206, 307] })).toBe(2); // the GET and its one resume
      // The byte budget kept counting across the reload: both downloads count, so it is used up.
      const third = await fetch(`${ferry.url}/v2/library/hupbig/blobs/${layer.digest}`) // anonymous pulls are allowed;
      expect(third.status).toBe(429);
    } finally {
      await upstream.setFault(null);
      await ferry.stop();
    }
  }, 60_000);
});

describe("SIGTERM", () => {
  test("drains: the download in flight finishes, new connections are refused, the lease is released", async () => {
    const big = await (await import("../harness/images.ts")).bigLayer({ seed: "drain", sizeMiB: 40 });
    await upstream.push(big, "library/drain:latest");
    const ferry = await startFerry({ config: `[redis]\nurl = "${redis.url}"\n[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\nstall_timeout = "2s"\n${OTHER_REGISTRIES_OFF}` });
    const blob = big.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    // The upstream body stalls after 4 MiB, so the download is surely in flight when SIGTERM arrives.
    const stallAt = 4 * 1024 * 1024;
    await upstream.setFault({ kind: "stall", afterBytes: stallAt, times: 1, match: new RegExp(blob.digest.slice(7)) });
    const response = await fetch(`${ferry.url}/v2/library/drain/blobs/${blob.digest}`);
    const reading = response.arrayBuffer();
    // Fresh connections (keepalive: false): a pooled one would not show the listener closing.
    const once = { keepalive: false } as const;
    await waitFor(
      async () => {
        const status = (await (await fetch(`${ferry.url}/api/status`, once)).json()) as { downloads: { digest: string; bytes: number }[] };
        return status.downloads.some((d) => d.digest === blob.digest && d.bytes >= stallAt);
      },
      { what: "the download to reach the upstream's stall", onTimeout: () => ferry.logs().slice(-3000) },
    );
    process.kill(ferry.pid, "SIGTERM");
    await waitFor(() => fetch(`${ferry.url}/healthz`, once).then(() => false, () => true), { what: "new connections to be refused", onTimeout: () => ferry.logs().slice(-3000) });
    await upstream.setFault(null); // drops the held connection: ferry resumes the download
    const bytes = await reading;
    expect(bytes.byteLength).toBe(blob.size);
    expect(`sha256:${new Bun.CryptoHasher("sha256").update(new Uint8Array(bytes)).digest("hex")}`).toBe(blob.digest);
    expect(await ferry.waitForLog('"msg":"stopped"', 40_000)).toBe(true);
    const Redis = (await import("ioredis")).default;
    const client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
    expect(await client.keys("ferry:lock:*")).toEqual([]);
    client.disconnect();
    await ferry.stop();
  }, 90_000);
});
