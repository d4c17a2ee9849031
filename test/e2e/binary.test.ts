// The single executable: `bun build --compile` → dist/ferry, and its command line.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { freePort } from "../harness/ferry.ts";
import { waitFor } from "../harness/proc.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "dist/ferry");

function run(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([BIN, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

beforeAll(() => {
  const build = Bun.spawnSync(["npm", "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 120_000 });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
}, 150_000);

describe("dist/ferry", () => {
  test("--help and version answer", () => {
    const help = run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("ferry serve [--config FILE]");
    const version = run(["version"]);
    expect(version.code).toBe(0);
    expect(version.stdout).toContain(`ferry ${pkg.version}`);
    const unknown = run(["fly"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "fly"');
  });

  test("an invalid config stops start-up with a message naming the key", () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-bin-"));
    try {
      const config = join(dir, "bad.toml");
      writeFileSync(config, '[cache]\ntag_ttl = "soon"\n');
      const bad = run(["serve", "--config", config]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("cache.tag_ttl");
      const missing = run(["serve", "--config", join(dir, "nope.toml")]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("config file not found");
      const badEnv = run(["serve"], { FERRY_LISTEN: "nowhere" });
      expect(badEnv.code).toBe(2);
      expect(badEnv.stderr).toContain("server.listen");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("serve with no config file: embedded defaults, env overrides, JSON request log", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-bin-"));
    const port = await freePort();
    // stdout goes to a file, so the test can wait for a line while ferry runs.
    const stdoutPath = join(dir, "stdout.log");
    const stdout = () => readFileSync(stdoutPath, "utf8");
    const proc = Bun.spawn([BIN, "serve"], {
      cwd: dir,
      env: { ...process.env, FERRY_LISTEN: `127.0.0.1:${port}`, FERRY_CONFIG: "" },
      stdout: Bun.file(stdoutPath),
      stderr: "pipe",
    });
    try {
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = await fetch(`http://127.0.0.1:${port}/v2/`).then(
          (r) => r.status,
          () => 0,
        );
        if (status !== 200) await Bun.sleep(50);
      }
      expect(status).toBe(200);
      // The hash worker is an extra entry point of the build: the binary must find it.
      await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${port}/api/status`)).json()) as { cache: { hashWorker: boolean } }).cache.hashWorker, { what: "the hash worker to be ready" });
      const bad = await fetch(`http://127.0.0.1:${port}/v2/Bad/manifests/x`);
      expect(bad.status).toBe(400);
      await bad.arrayBuffer();
      // The access line is written once the response has gone out: wait for it.
      await waitFor(() => stdout().includes('"path":"/v2/Bad/manifests/x"'), { what: "the access line of /v2/Bad/manifests/x", onTimeout: stdout });
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      const lines = stdout().split("\n").filter(Boolean).map((l) => JSON.parse(l));
      const started = lines.find((l) => l.msg === "ferry listening");
      expect(started.cache).toBe("./data"); // the embedded default, relative to the working dir
      const request = lines.find((l) => l.msg === "request" && l.path === "/v2/Bad/manifests/x");
      expect(request).toMatchObject({ method: "GET", status: 400 });
      expect(typeof request.id).toBe("string");
      expect(typeof request.ms).toBe("number");
      expect(lines.some((l) => l.msg === "stopped")).toBe(true);
    } finally {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
