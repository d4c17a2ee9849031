// Issue 6, deployment: scripts/install.sh into staging roots (idempotence, config kept,
// uninstall, purge), the systemd unit (systemd-analyze, its readiness probe run for
// real), deploy/nginx/ferry-lb.conf run by a real nginx in front of two ferry processes
// (plain and with its TLS block), the Kubernetes manifests (parsed, cross-checked, their
// config.toml loaded by ferry's own parser), and scripts/release.sh (x64 + arm64, offline).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import pkg from "../../package.json" with { type: "json" };
import { parseConfig } from "../../src/config/load.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { startNginx, type NginxProcess } from "../harness/nginx.ts";
import { freePort, waitFor } from "../harness/proc.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "dist/ferry");
const INSTALL = join(ROOT, "scripts/install.sh");
const UNIT = join(ROOT, "scripts/ferry.service");
const scratch = mkdtempSync(join(tmpdir(), "ferry-deploy-"));

function sh(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; timeout?: number } = {}) {
  const p = Bun.spawnSync(cmd, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe", timeout: opts.timeout ?? 60_000 });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function install(...args: string[]) {
  return sh(["bash", INSTALL, ...args]);
}

/** A root with just enough /etc for `useradd --root`. */
function stagingRoot(name: string, withEtc = true): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  if (withEtc) {
    mkdirSync(join(dir, "etc"));
    writeFileSync(join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
    writeFileSync(join(dir, "etc/group"), "root:x:0:\n");
    writeFileSync(join(dir, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o640 });
    writeFileSync(join(dir, "etc/gshadow"), "root:*::\n", { mode: 0o640 });
  }
  return dir;
}

/** Every path under dir with type, mode, owner, size, mtime and content hash. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = join(dir, rel);
    const st = lstatSync(abs);
    const hash = st.isFile() ? createHash("sha256").update(readFileSync(abs)).digest("hex") : "";
    out.push(`${rel || "."} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${hash}`);
    if (st.isDirectory()) for (const name of readdirSync(abs).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk("");
  return out;
}

const mode = (path: string) => lstatSync(path).mode & 0o7777;
const passwdEntry = (root: string) =>
  readFileSync(join(root, "etc/passwd"), "utf8")
    .split("\n")
    .find((l) => l.startsWith("ferry:"))
    ?.split(":");

/** [Section] → key → values, from a unit file (comments and blank lines dropped). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    ((out[section]![key] ??= []) as string[]).push(line.slice(eq + 1));
  }
  return out;
}

const unit = parseUnit(readFileSync(UNIT, "utf8"));
// The unit's readiness probe, as systemd runs it ($$ → $, %% → %).
const script = /^\/bin\/sh -c '([^']*)'$/.exec(unit.Service?.ExecStartPost?.[0] ?? "")?.[1]?.replaceAll("$$", "$").replaceAll("%%", "%") ?? "exit 99";

beforeAll(() => {
  const build = sh(["npm", "run", "build"], { timeout: 150_000 });
  if (build.code !== 0) throw new Error(`build failed: ${build.stderr}`);
}, 160_000);

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("scripts/install.sh", () => {
  test(
    "installs binary, user, config, cache dir and unit into a staging root; a second run changes nothing",
    () => {
      const root = stagingRoot("twice");
      const first = install("--root", root, BIN);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain(`ferry ${pkg.version}`);
      expect(first.stdout).toContain("created system user ferry");
      expect(first.stdout).toContain("systemctl not called");

      // The user: system account, no login shell, home at the cache dir (not created by useradd).
      const user = passwdEntry(root)!;
      expect(user).toBeDefined();
      const [uid, gid] = [Number(user[2]), Number(user[3])];
      expect(uid).toBeLessThan(1000);
      expect(user[5]).toBe("/var/cache/ferry");
      expect(user[6]).toMatch(/nologin$/);
      expect(readFileSync(join(root, "etc/group"), "utf8")).toContain(`ferry:x:${gid}:`);

      const bin = join(root, "usr/local/bin/ferry");
      expect(mode(bin)).toBe(0o755);
      expect(Bun.hash(readFileSync(bin))).toBe(Bun.hash(readFileSync(BIN)));
      expect(sh([bin, "version"]).stdout).toContain(`ferry ${pkg.version}`);

      const config = join(root, "etc/ferry/config.toml");
      expect(mode(config)).toBe(0o640);
      expect(lstatSync(config).uid).toBe(0);
      expect(lstatSync(config).gid).toBe(gid);
      const parsed = parseConfig(readFileSync(config, "utf8"));
      expect(parsed.cache.dir).toBe("/var/cache/ferry");
      expect(parsed.server.port).toBe(5000);

      const cache = join(root, "var/cache/ferry");
      expect(lstatSync(cache).isDirectory()).toBe(true);
      expect(mode(cache)).toBe(0o750);
      expect(lstatSync(cache).uid).toBe(uid);
      expect(lstatSync(cache).gid).toBe(gid);

      const unit = join(root, "etc/systemd/system/ferry.service");
      expect(mode(unit)).toBe(0o644);
      expect(readFileSync(unit, "utf8")).toBe(readFileSync(UNIT, "utf8"));

      const before = snapshot(root);
      const second = install("--root", root, BIN);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toContain("nothing to do");
      expect(second.stdout).toContain("skip: user ferry exists");
      expect(second.stdout).toContain("skip: /etc/ferry/config.toml exists");
      expect(second.stdout).not.toContain("done:");
      expect(snapshot(root)).toEqual(before);
    },
    60_000,
  );

  test(
    "the installed binary serves with the installed config, as the unit runs it, and stops on SIGTERM",
    async () => {
      const root = stagingRoot("serve");
      expect(install("--root", root, BIN).code).toBe(0);
      const port = await freePort();
      const cache = join(root, "var/cache/ferry");
      const proc = Bun.spawn([join(root, "usr/local/bin/ferry"), "serve", "--config", join(root, "etc/ferry/config.toml")], {
        cwd: cache,
        // The unit's FERRY_CACHE_DIR, moved into the staging root; a loopback port.
        env: { ...process.env, FERRY_CACHE_DIR: cache, FERRY_LISTEN: `127.0.0.1:${port}` },
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        await waitFor(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200), { timeoutMs: 5_000, what: "the unit's ferry to answer /healthz" });
        expect(readdirSync(cache).length).toBeGreaterThan(0); // the cache (metadata db) is where the unit says
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
        expect(ready.status).toBe(200);
        // The unit's ExecStartPost against the real thing.
        if (Bun.which("curl")) {
          const probe = Bun.spawnSync(["/bin/sh", "-c", script], { env: { ...process.env, FERRY_READY_URL: `http://127.0.0.1:${port}/readyz` }, stdout: "pipe", timeout: 10_000 });
          expect(probe.exitCode, probe.stdout.toString()).toBe(0);
        }
      } finally {
        proc.kill("SIGTERM");
      }
      expect(await proc.exited).toBe(0);
    },
    30_000,
  );

  test(
    "never overwrites an operator's config; replaces a changed binary and repairs modes",
    () => {
      const root = stagingRoot("keep-config");
      mkdirSync(join(root, "etc/ferry"), { recursive: true });
      const mine = '[server]\nlisten = "127.0.0.1:6000"\n# mine\n';
      writeFileSync(join(root, "etc/ferry/config.toml"), mine);
      const first = install("--root", root, BIN);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain("/etc/ferry/config.toml exists (kept as it is)");
      expect(readFileSync(join(root, "etc/ferry/config.toml"), "utf8")).toBe(mine);

      writeFileSync(join(root, "usr/local/bin/ferry"), "#!/bin/sh\necho old\n");
      chmodSync(join(root, "var/cache/ferry"), 0o777);
      const again = install("--root", root, BIN);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain("updated /usr/local/bin/ferry");
      expect(again.stdout).toContain("mode of");
      expect(Bun.hash(readFileSync(join(root, "usr/local/bin/ferry")))).toBe(Bun.hash(readFileSync(BIN)));
      expect(mode(join(root, "usr/local/bin/ferry"))).toBe(0o755);
      expect(mode(join(root, "var/cache/ferry"))).toBe(0o750);
      expect(readFileSync(join(root, "etc/ferry/config.toml"), "utf8")).toBe(mine);
    },
    60_000,
  );

  test(
    "--uninstall removes binary and unit, keeps config, cache and user; --purge removes everything",
    () => {
      const root = stagingRoot("uninstall");
      expect(install("--root", root, BIN).code).toBe(0);
      writeFileSync(join(root, "var/cache/ferry/blob"), "cached");

      const un = install("--root", root, "--uninstall");
      expect(un.code, un.stderr).toBe(0);
      expect(existsSync(join(root, "usr/local/bin/ferry"))).toBe(false);
      expect(existsSync(join(root, "etc/systemd/system/ferry.service"))).toBe(false);
      expect(existsSync(join(root, "etc/ferry/config.toml"))).toBe(true);
      expect(readFileSync(join(root, "var/cache/ferry/blob"), "utf8")).toBe("cached");
      expect(passwdEntry(root)).toBeDefined();
      expect(un.stdout).toContain("kept /etc/ferry and /var/cache/ferry");

      const unAgain = install("--root", root, "--uninstall");
      expect(unAgain.code, unAgain.stderr).toBe(0);
      expect(unAgain.stdout).toContain("nothing to do");

      const purge = install("--root", root, "--uninstall", "--purge");
      expect(purge.code, purge.stderr).toBe(0);
      expect(existsSync(join(root, "etc/ferry"))).toBe(false);
      expect(existsSync(join(root, "var/cache/ferry"))).toBe(false);
      expect(passwdEntry(root)).toBeUndefined();
      expect(purge.stdout).toContain("removed user ferry");

      const purgeAgain = install("--root", root, "--uninstall", "--purge");
      expect(purgeAgain.code, purgeAgain.stderr).toBe(0);
      expect(purgeAgain.stdout).toContain("nothing to do");
    },
    60_000,
  );

  test(
    "a bare staging root: user creation skipped with a note; bad arguments refused",
    () => {
      const root = stagingRoot("bare", false);
      const r = install("--root", root, BIN);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("user ferry not created");
      expect(existsSync(join(root, "usr/local/bin/ferry"))).toBe(true);
      expect(existsSync(join(root, "etc/ferry/config.toml"))).toBe(true);
      expect(install("--root", root, BIN).stdout).toContain("nothing to do");

      const noBinary = install("--root", root, join(scratch, "nope"));
      expect(noBinary.code).toBe(1);
      expect(noBinary.stderr).toContain("not found");
      expect(install("--root", root, "--purge").code).toBe(1);
      expect(install("--root", join(scratch, "missing-root"), BIN).code).toBe(1);
      expect(install("--bogus").code).toBe(1);
      const help = install("--help");
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("--uninstall");
    },
    60_000,
  );

  test(
    "install.sh and release.sh are shellcheck-clean",
    () => {
      const r = sh(["shellcheck", "scripts/install.sh", "scripts/release.sh"]);
      expect(r.stdout + r.stderr).toBe("");
      expect(r.code).toBe(0);
    },
    30_000,
  );
});

describe("scripts/ferry.service", () => {
  const svc = unit.Service!;
  const one = (key: string) => {
    expect(svc[key], key).toBeDefined();
    expect(svc[key]!.length, key).toBe(1);
    return svc[key]![0]!;
  };

  test("has the required settings and hardening", () => {
    expect(one("Type")).toBe("simple");
    expect(one("User")).toBe("ferry");
    expect(one("ExecStart")).toBe("/usr/local/bin/ferry serve --config /etc/ferry/config.toml");
    expect(one("WorkingDirectory")).toBe("/var/cache/ferry");
    expect(svc.Environment).toContain("FERRY_CACHE_DIR=/var/cache/ferry");
    expect(one("ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    expect(one("ExecStartPost")).toContain("FERRY_READY_URL");
    expect(svc.Environment!.some((e) => /^FERRY_READY_URL=http:\/\/127\.0\.0\.1:5000\/readyz$/.test(e))).toBe(true);
    const expected: Record<string, string> = {
      ProtectSystem: "strict",
      ReadWritePaths: "/var/cache/ferry",
      NoNewPrivileges: "yes",
      PrivateTmp: "yes",
      ProtectHome: "yes",
      ProtectKernelTunables: "yes",
      ProtectKernelModules: "yes",
      ProtectControlGroups: "yes",
      RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
      LockPersonality: "yes",
      CapabilityBoundingSet: "",
      AmbientCapabilities: "",
      Restart: "on-failure",
      RestartSec: "2",
      LimitNOFILE: "65536",
      TimeoutStopSec: "40",
      KillSignal: "SIGTERM",
    };
    for (const [key, value] of Object.entries(expected)) expect(one(key), key).toBe(value);
    // Bun's JIT needs writable+executable mappings: never set (see the unit's comment).
    expect(svc.MemoryDenyWriteExecute).toBeUndefined();
    expect(unit.Install!.WantedBy).toEqual(["multi-user.target"]);
  });

  test(
    "systemd-analyze verify finds nothing to complain about; security exposure is low",
    () => {
      // The unit as installed, with ExecStart pointed at the built binary (verify checks
      // that the command exists and is executable).
      const dir = join(scratch, "unit");
      mkdirSync(dir, { recursive: true });
      const path = join(dir, "ferry.service");
      writeFileSync(path, readFileSync(UNIT, "utf8").replace("/usr/local/bin/ferry", BIN));
      const verify = sh(["systemd-analyze", "verify", "--man=no", path]);
      expect(verify.stdout + verify.stderr).toBe("");
      expect(verify.code).toBe(0);
      const security = sh(["systemd-analyze", "security", "--offline=yes", "--no-pager", path]);
      const level = /Overall exposure level for ferry\.service: ([\d.]+)/.exec(security.stdout + security.stderr);
      expect(level, security.stdout + security.stderr).not.toBeNull();
      expect(Number(level![1])).toBeLessThan(2.5);
    },
    30_000,
  );


  async function probe(url: string, timeoutSeconds?: number) {
    const started = Date.now();
    const env: Record<string, string> = { ...(process.env as Record<string, string>), FERRY_READY_URL: url };
    if (timeoutSeconds !== undefined) env.FERRY_READY_TIMEOUT = String(timeoutSeconds);
    const p = Bun.spawn(["/bin/sh", "-c", script], { env, stdout: "pipe", stderr: "pipe" });
    const code = await p.exited;
    return { code, ms: Date.now() - started, out: await new Response(p.stdout).text() };
  }

  test(
    "ExecStartPost waits for /readyz 200; a 503 at the deadline still starts, no answer fails",
    async () => {
      expect(svc.Environment).toContain("FERRY_READY_TIMEOUT=30");
      let readyAt = Date.now() + 1500;
      const seen: string[] = [];
      const server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch(req) {
          seen.push(new URL(req.url).pathname);
          return new Response(null, { status: Date.now() >= readyAt ? 200 : 503 });
        },
      });
      try {
        const ready = await probe(`http://127.0.0.1:${server.port}/readyz`);
        expect(ready.code).toBe(0);
        expect(ready.ms).toBeGreaterThanOrEqual(1400);
        expect(ready.ms).toBeLessThan(5000);
        expect(seen.length).toBeGreaterThan(1);
        expect(new Set(seen)).toEqual(new Set(["/readyz"]));

        // Answering 503 (Redis or S3 down) until the deadline: started, with a message.
        readyAt = Infinity;
        const degraded = await probe(`http://127.0.0.1:${server.port}/readyz`, 2);
        expect(degraded.code).toBe(0);
        expect(degraded.ms).toBeGreaterThanOrEqual(1000);
        expect(degraded.out).toContain("still answers 503");
      } finally {
        server.stop(true);
      }
      // Nothing listening at all: the start fails after the deadline.
      const dead = await probe(`http://127.0.0.1:${await freePort()}/readyz`, 2);
      expect(dead.code).toBe(1);
      expect(dead.ms).toBeGreaterThanOrEqual(1000);
      expect(dead.out).toContain("no answer from");
    },
    30_000,
  );

  test("ExecStartPost without curl does not block the start", () => {
    const r = Bun.spawnSync(["/bin/sh", "-c", script], { env: { PATH: "/nonexistent", FERRY_READY_URL: "http://127.0.0.1:9/readyz" }, stdout: "pipe" });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain("curl not found");
  });
});

describe("deploy/nginx/ferry-lb.conf", () => {
  const conf = readFileSync(join(ROOT, "deploy/nginx/ferry-lb.conf"), "utf8");
  let ferries: FerryProcess[] = [];
  let nginx: NginxProcess | undefined;

  afterAll(async () => {
    await nginx?.stop();
    await Promise.all(ferries.map((f) => f.stop("SIGKILL")));
  });

  /** The file with its TLS block uncommented (or not), pointed at loopback ports. */
  function localConf(ports: { http: number; https?: number; cert?: string; key?: string }): string {
    let lines = conf.split("\n");
    if (ports.https) {
      const begin = lines.findIndex((l) => l.startsWith("# BEGIN TLS"));
      const end = lines.findIndex((l) => l.startsWith("# END TLS"));
      const first = lines.findIndex((l, i) => i > begin && l === "# server {");
      expect(begin).toBeGreaterThan(0);
      expect(first).toBeGreaterThan(begin);
      lines = lines.map((l, i) => (i >= first && i < end ? l.replace(/^# ?/, "") : l));
    }
    const servers = ferries.map((f) => `    server ${f.host} max_fails=2 fail_timeout=10s;`);
    let replaced = 0;
    const out = lines
      .filter((l) => !/^\s*#/.test(l)) // comments (the harness refuses any non-loopback "listen")
      .filter((l) => !/listen \[::\]/.test(l))
      .flatMap((l) => {
        if (/^\s*server 192\.0\.2\.\d+:5000 /.test(l)) return replaced++ === 0 ? servers : [];
        return [l];
      })
      .join("\n")
      .replace(/listen 80;/, `listen 127.0.0.1:${ports.http};`)
      .replace(/listen 443 ssl;/, `listen 127.0.0.1:${ports.https} ssl;`)
      .replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${ports.cert};`)
      .replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${ports.key};`);
    expect(replaced).toBe(3);
    return out;
  }

  test(
    "a real nginx with it balances /v2/ over two ferry replicas, fails over, and refuses big bodies",
    async () => {
      ferries = await Promise.all([startFerry(), startFerry()]);
      const port = await freePort();
      nginx = await startNginx(localConf({ http: port }), [port]);
      const url = `http://127.0.0.1:${port}`;

      for (let i = 0; i < 6; i++) {
        const r = await fetch(`${url}/v2/`);
        expect(r.status).toBe(200);
        expect(r.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
      }
      const used = new Set(nginx.accessLog().filter((e) => e.uri === "/v2/").map((e) => e.upstream));
      expect(used).toEqual(new Set(ferries.map((f) => f.host)));

      // client_max_body_size: pull-only, so a big body is refused by nginx itself.
      const big = await fetch(`${url}/v2/library/x/blobs/uploads/`, { method: "POST", body: "x".repeat(200_000) });
      expect(big.status).toBe(413);

      // One replica gone: every request still answered, by the other one.
      await ferries[0]!.stop("SIGKILL");
      for (let i = 0; i < 4; i++) expect((await fetch(`${url}/v2/`)).status).toBe(200);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);

      await nginx.stop();
      nginx = undefined;
      await ferries[1]!.stop();
      ferries = [];
    },
    90_000,
  );

  test(
    "its commented TLS server block works when uncommented",
    async () => {
      ferries = [await startFerry()];
      const dir = join(scratch, "tls");
      mkdirSync(dir, { recursive: true });
      const cert = join(dir, "cert.pem");
      const key = join(dir, "key.pem");
      const gen = sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert]);
      expect(gen.code, gen.stderr).toBe(0);
      const [http, https] = [await freePort(), await freePort()];
      nginx = await startNginx(localConf({ http, https, cert, key }), [http]);
      await waitFor(() => fetch(`https://127.0.0.1:${https}/v2/`, { tls: { rejectUnauthorized: false } }).then((r) => r.status === 200), { timeoutMs: 5_000, intervalMs: 100, what: "nginx to proxy /v2/ over TLS" });
      await nginx.stop();
      nginx = undefined;
      await ferries[0]!.stop();
      ferries = [];
    },
    60_000,
  );
});

describe("deploy/kubernetes", () => {
  const dir = join(ROOT, "deploy/kubernetes");
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  type Doc = any;
  const docs: { file: string; doc: Doc }[] = [];
  for (const file of files) {
    for (const d of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
      const doc = d.toJS();
      if (doc) docs.push({ file, doc });
    }
  }
  const byKind = (kind: string): Doc[] => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
  const only = (kind: string): Doc => {
    const all = byKind(kind);
    expect(all.length, kind).toBe(1);
    return all[0];
  };

  test("every YAML parses (no duplicate keys) and the kustomization lists every manifest", () => {
    expect(new Set(docs.map((d) => d.doc.kind))).toEqual(new Set(["Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "Kustomization"]));
    const kustomization = only("Kustomization");
    expect(new Set(kustomization.resources)).toEqual(new Set(files.filter((f) => f !== "kustomization.yaml")));
    expect(kustomization.namespace).toBe(only("Namespace").metadata.name);
    expect(kustomization.images.map((i: Doc) => i.name)).toContain(only("Deployment").spec.template.spec.containers[0].image.split(":")[0]);
  });

  test("Deployment: 3 replicas, probes, locked-down security context, resources, a bounded hot tier", () => {
    const deploy = only("Deployment");
    expect(deploy.spec.replicas).toBe(3);
    const pod = deploy.spec.template.spec;
    const labels = deploy.spec.template.metadata.labels;
    expect(deploy.spec.selector.matchLabels).toEqual(labels);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    const portName = c.ports[0].name;
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: portName });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: portName });
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(c.securityContext.capabilities.drop).toEqual(["ALL"]);
    expect(c.securityContext.capabilities.add).toBeUndefined();
    for (const kind of ["requests", "limits"]) {
      expect(c.resources[kind].cpu, kind).toBeDefined();
      expect(c.resources[kind].memory, kind).toBeDefined();
    }
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(35); // ferry drains for 30 s

    // Config: the ConfigMap's config.toml, mounted where --config points.
    const configMap = only("ConfigMap");
    const configArg = c.args[c.args.indexOf("--config") + 1] as string;
    const configMount = c.volumeMounts.find((m: Doc) => configArg.startsWith(`${m.mountPath}/`));
    expect(configMount.readOnly).toBe(true);
    const configVolume = pod.volumes.find((v: Doc) => v.name === configMount.name);
    expect(configVolume.configMap.name).toBe(configMap.metadata.name);
    expect(Object.keys(configMap.data)).toContain(configArg.slice(configMount.mountPath.length + 1));

    // Secrets: every non-optional key referenced exists in the Secret.
    const secret = only("Secret");
    for (const e of c.env) {
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref) continue;
      expect(ref.name).toBe(secret.metadata.name);
      if (!ref.optional) expect(Object.keys(secret.stringData)).toContain(ref.key);
    }

    // The ConfigMap's config.toml is valid for ferry, with the Secret's values in the env.
    const env: Record<string, string> = {};
    for (const e of c.env) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? secret.stringData[e.valueFrom.secretKeyRef.key] : undefined);
    const config = parseConfig(configMap.data["config.toml"], env);
    expect(config.server.port).toBe(c.ports[0].containerPort);
    expect(config.redis?.url).toMatch(/^redis:\/\/[a-z0-9.-]+\.svc\.cluster\.local:6379/);
    expect(config.s3?.endpoint).toMatch(/\.svc\.cluster\.local:9000$/);
    expect(config.s3?.bucket).toBeTruthy();
    expect(config.s3?.accessKeyId).toBe(secret.stringData["s3-access-key-id"]);
    expect(config.s3?.secretAccessKey).toBe(secret.stringData["s3-secret-access-key"]);
    expect(config.cache.maxSize).toBeGreaterThan(0);

    // The hot tier: a volume at cache.dir (the root file system is read-only), bigger than
    // cache.max_size so ferry evicts before the kubelet evicts the pod.
    const cacheMount = c.volumeMounts.find((m: Doc) => m.mountPath === config.cache.dir);
    expect(cacheMount).toBeDefined();
    const cacheVolume = pod.volumes.find((v: Doc) => v.name === cacheMount.name);
    const quantity = (q: string) => {
      const m = /^(\d+)(Ki|Mi|Gi|Ti)$/.exec(q)!;
      return Number(m[1]) * 1024 ** (["Ki", "Mi", "Gi", "Ti"].indexOf(m[2]!) + 1);
    };
    expect(cacheVolume.emptyDir).toBeDefined();
    expect(quantity(cacheVolume.emptyDir.sizeLimit)).toBeGreaterThan(config.cache.maxSize!);
    expect(quantity(c.resources.limits["ephemeral-storage"])).toBeGreaterThan(quantity(cacheVolume.emptyDir.sizeLimit));
    expect(c.volumeMounts.some((m: Doc) => m.mountPath === "/tmp")).toBe(true);
  });

  test("Service and PodDisruptionBudget select the Deployment's pods", () => {
    const deploy = only("Deployment");
    const labels = deploy.spec.template.metadata.labels;
    const container = deploy.spec.template.spec.containers[0];
    const service = only("Service");
    expect(service.spec.selector).toEqual(labels);
    expect(service.spec.ports[0].targetPort).toBe(container.ports[0].name);
    const pdb = only("PodDisruptionBudget");
    expect(pdb.apiVersion).toBe("policy/v1");
    expect(pdb.spec.selector.matchLabels).toEqual(labels);
    expect(pdb.spec.maxUnavailable ?? deploy.spec.replicas - pdb.spec.minAvailable).toBeLessThan(deploy.spec.replicas);
  });
});

describe("scripts/release.sh", () => {
  test(
    "builds x64 and arm64 binaries offline with SHA256SUMS",
    () => {
      const started = Date.now();
      const r = sh(["bash", "scripts/release.sh"], { timeout: 150_000 });
      expect(r.code, r.stderr).toBe(0);
      console.log(`release.sh took ${Date.now() - started} ms`);
      const sums = readFileSync(join(ROOT, "dist/SHA256SUMS"), "utf8").trim().split("\n");
      expect(sums.map((l) => l.split(/\s+/)[1])).toEqual(["ferry-linux-x64", "ferry-linux-arm64"]);
      for (const line of sums) {
        const [hash, name] = line.split(/\s+/);
        expect(createHash("sha256").update(readFileSync(join(ROOT, "dist", name!))).digest("hex")).toBe(hash!);
      }
      // `sha256sum -c` accepts the file as it is.
      expect(sh(["sha256sum", "-c", "SHA256SUMS"], { cwd: join(ROOT, "dist") }).code).toBe(0);
      const elfMachine = (name: string) => readFileSync(join(ROOT, "dist", name)).readUInt16LE(18);
      expect(elfMachine("ferry-linux-x64")).toBe(0x3e);
      expect(elfMachine("ferry-linux-arm64")).toBe(0xb7);
      if (Bun.which("file")) expect(sh(["file", "dist/ferry-linux-arm64"]).stdout).toContain("ARM aarch64");
      if (process.arch === "x64") expect(sh(["dist/ferry-linux-x64", "version"]).stdout).toContain(`ferry ${pkg.version}`);
      if (process.arch === "x64") {
        expect(sh(["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", "dist/ferry-linux-arm64", "version"]).stdout).toContain(`ferry ${pkg.version}`);
      }
      if (Bun.which("file")) expect(r.stderr).toContain("ARM aarch64");
    },
    160_000,
  );
});
