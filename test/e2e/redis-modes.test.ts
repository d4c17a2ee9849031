// Issue 4: a Redis behind Sentinel, as ioredis supports it: ferry finds the master through
// a real redis-sentinel and keeps its shared state there.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFerry } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, hubRegistry } from "../harness/oci.ts";
import { freePort, spawnDaemon, waitFor, type Daemon } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let master: RedisServer;
let sentinel: Daemon;
let sentinelPort: number;
let image: BuiltImage;
const dir = mkdtempSync(join(tmpdir(), "ferry-sentinel-"));

beforeAll(async () => {
  [upstream, master] = await Promise.all([startUpstream(), startRedis()]);
  image = await fiveLayer({ seed: "sentinel" });
  await upstream.push(image, "library/five:latest");
  sentinelPort = await freePort();
  const conf = join(dir, "sentinel.conf");
  writeFileSync(conf, [`port ${sentinelPort}`, "bind 127.0.0.1", `dir ${dir}`, `sentinel monitor ferrymaster 127.0.0.1 ${master.port} 1`, "sentinel resolve-hostnames no"].join("\n") + "\n");
  sentinel = spawnDaemon(["redis-server", conf, "--sentinel"], { logFile: join(dir, "sentinel.log") });
  const probe = new Redis({ host: "127.0.0.1", port: sentinelPort, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  await waitFor(
    async () => {
      try {
        if (probe.status !== "ready") await probe.connect();
        const addr = (await probe.call("SENTINEL", "get-master-addr-by-name", "ferrymaster")) as string[] | null;
        return addr?.[1] === String(master.port);
      } catch {
        probe.disconnect();
        return false;
      }
    },
    { timeoutMs: 10_000, intervalMs: 100, what: "redis sentinel" },
  );
  probe.disconnect();
}, 120_000);

afterAll(async () => {
  await sentinel?.stop();
  await Promise.all([upstream?.stop(), master?.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("Redis Sentinel", () => {
  test("ferry reaches the master through the sentinel and shares its state there", async () => {
    const ferry = await startFerry({ config: `[redis]\nsentinels = ["127.0.0.1:${sentinelPort}"]\nsentinel_name = "ferrymaster"\n${hubRegistry(upstream.url)}` });
    try {
      const ready = (await (await fetch(`${ferry.url}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
      expect(ready.checks.redis!.ok).toBe(true);
      const r = await fetch(`${ferry.url}/v2/library/five/manifests/latest`, { headers: { Accept: ACCEPT } });
      expect(r.headers.get("docker-content-digest")).toBe(image.manifestDigest);
      const direct = new Redis(master.url);
      try {
        expect(JSON.parse((await direct.get("ferry:tag:{docker.io/library/five}:latest"))!).digest).toBe(image.manifestDigest);
      } finally {
        direct.disconnect();
      }
    } finally {
      await ferry.stop();
    }
  }, 30_000);
});
