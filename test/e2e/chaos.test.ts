// Issue 17: a chaos run of the whole fleet. Three replicas behind nginx, Redis (behind
// Sentinel, then separately a 3-master Cluster), S3 (test/harness/fleet-s3.ts: Debian's
// Ceph radosgw) and the harness upstream (distribution with
// token auth and CDN redirects). Several clients pull docker-style (HEAD tag → GET
// manifest by digest → GET blobs), cold and warm, small and big, while the run SIGKILLs
// a replica, restarts Redis empty, fails the Sentinel master over, stops S3 for a while
// and lets the upstream hang. Seeded and bounded: FERRY_SEED replays a run's choices,
// FERRY_CHAOS_SECONDS (default 75 per Redis mode: each fault about once) makes it longer.
//
// It fails on: a pull that failed although a healthy tier or a cached copy could serve
// it (every pull outside an upstream hang, and warm ones during it), a corrupt byte,
// more than one upstream GET of a blob outside the fault windows (the upstream's own
// log), a lease in Redis or a temp file on a replica's disk left once the run is over,
// or an object in S3 that is not the whole blob its key names.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis, { Cluster } from "ioredis";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { startFleetS3, s3Config, type FleetS3 } from "../harness/fleet-s3.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startNginx } from "../harness/nginx.ts";
import { ACCEPT, sha256 } from "../harness/oci.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startRedisCluster, startRedisSentinel, type RedisCluster, type RedisSentinelSet } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { prng, runSeed } from "../harness/seeded.ts";

const SEED = runSeed();
const SECONDS = Number(process.env.FERRY_CHAOS_SECONDS ?? 75);
const CLIENTS = 4;
const ATTEMPTS = 5; // per step, as docker retries a layer
const LEASE_MS = 3_000;
/** After a fault ends: a dead holder's lease expires, replicas reconnect. */
const SETTLE_MS = LEASE_MS + 1_000;

let upstream: Upstream;
let s3: FleetS3;
const scratch = mkdtempSync(join(tmpdir(), "ferry-chaos-"));
const images: { name: string; image: BuiltImage; big: boolean }[] = [];

beforeAll(async () => {
  [upstream, s3] = await Promise.all([startUpstream(), startFleetS3("ferry-chaos")]);
  for (let i = 0; i < 6; i++) {
    images.push({ name: `small${i}`, image: await fiveLayer({ seed: `chaos-small-${i}` }), big: false });
    if (i % 3 === 0) images.push({ name: `big${i}`, image: await bigLayer({ seed: `chaos-big-${i}`, sizeMiB: 24 }), big: true });
  }
  for (const { name, image } of images) await upstream.push(image, `library/${name}:latest`);
  console.log(`chaos: FERRY_SEED=${SEED} FERRY_CHAOS_SECONDS=${SECONDS} (s3: ${s3.kind})`);
}, 300_000);

afterAll(async () => {
  await Promise.all([upstream?.stop(), s3?.dispose()]);
  rmSync(scratch, { recursive: true, force: true });
});

interface Fleet {
  lbUrl: string;
  replicas: FerryProcess[];
  cacheDirs: string[];
  kill(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

async function startFleet(mode: string, redisToml: string): Promise<Fleet> {
  const cacheDirs = [0, 1, 2].map((i) => join(scratch, `${mode}-${i}`));
  const config = [
    `[redis]\n${redisToml}\nlock_lease = "${LEASE_MS / 1000}s"`,
    s3Config(s3, `chaos-${mode}`),
    `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\ntimeout = "3s"\nfailure_cooldown = "1s"`,
  ].join("\n");
  const replicas = await Promise.all(cacheDirs.map((cacheDir) => startFerry({ config, cacheDir })));
  const ports = replicas.map((r) => r.port);
  const port = await freePort();
  const lb = await startNginx(
    `upstream ferry { ${replicas.map((r) => `server ${r.host} max_fails=1 fail_timeout=2s;`).join(" ")} }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://ferry;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_next_upstream error timeout http_502 http_503 http_504;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
    }
  }`,
    [port],
  );
  const fleet: Fleet = {
    lbUrl: `http://127.0.0.1:${port}`,
    replicas,
    cacheDirs,
    kill: (i) => replicas[i]!.stop("SIGKILL"),
    async restart(i) {
      replicas[i] = await startFerry({ config, cacheDir: cacheDirs[i], port: ports[i] });
    },
    async stop() {
      await lb.stop();
      await Promise.all(replicas.map((r) => r.stop()));
    },
  };
  return fleet;
}

interface Window {
  fault: string;
  start: number;
  end: number;
}

interface PullRecord {
  name: string;
  start: number;
  end: number;
  ok: boolean;
  warm: boolean;
  retries: number;
  corrupt: string[];
  error?: string;
}

/** One step with bounded retries: a connection cut or a 5xx is retried, a wrong byte is not. */
async function step(url: string, init: RequestInit, check: (r: Response, body: ArrayBuffer) => string | undefined, record: PullRecord): Promise<boolean> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      const r = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
      const body = await r.arrayBuffer();
      if (r.status === 200) {
        const problem = check(r, body);
        if (!problem) return true;
        record.corrupt.push(`${url}: ${problem}`);
        return false;
      }
      record.error = `${init.method ?? "GET"} ${url}: ${r.status} ${new TextDecoder().decode(body).slice(0, 200)}`;
    } catch (error) {
      record.error = `${init.method ?? "GET"} ${url}: ${(error as Error).message}`;
    }
    if (attempt < ATTEMPTS) {
      record.retries++;
      await Bun.sleep(300 * attempt); // a client's back-off, not a test decision
    }
  }
  return false;
}

async function dockerPull(lbUrl: string, entry: (typeof images)[number], warm: boolean): Promise<PullRecord> {
  const { name, image } = entry;
  const record: PullRecord = { name, start: Date.now(), end: 0, ok: false, warm, retries: 0, corrupt: [] };
  const base = `${lbUrl}/v2/library/${name}`;
  const ok =
    (await step(`${base}/manifests/latest`, { method: "HEAD", headers: { Accept: ACCEPT } }, (r) => (r.headers.get("docker-content-digest") === image.manifestDigest ? undefined : `tag digest ${r.headers.get("docker-content-digest")}`), record)) &&
    (await step(`${base}/manifests/${image.manifestDigest}`, { headers: { Accept: ACCEPT } }, (_, body) => (sha256(body) === image.manifestDigest ? undefined : "manifest bytes"), record)) &&
    (await Promise.all(image.blobs.map((blob) => step(`${base}/blobs/${blob.digest}`, {}, (_, body) => (sha256(body) === blob.digest ? undefined : `blob bytes (${body.byteLength} of ${blob.size})`), record)))).every(Boolean);
  record.ok = ok && record.corrupt.length === 0;
  if (record.ok) record.error = undefined;
  record.end = Date.now();
  return record;
}

interface RedisSide {
  toml: string;
  /** Restarts a Redis (master) without persistence: its keys are gone. */
  restartEmpty(random: () => number): Promise<string>;
  failover?: () => Promise<string>;
  lockKeys(): Promise<string[]>;
  dispose(): Promise<void>;
}

async function chaosRun(mode: string, redis: RedisSide): Promise<void> {
  const fleet = await startFleet(mode, redis.toml);
  const random = prng(SEED ^ mode.length);
  const windows: Window[] = [];
  const pulls: PullRecord[] = [];
  const warm = new Set<string>(); // images pulled whole since the run began
  upstream.clearLog();
  const started = Date.now();
  const deadline = started + SECONDS * 1000;
  try {
    const faults: Record<string, () => Promise<string>> = {
      "kill a replica": async () => {
        const i = Math.floor(random() * 3);
        await fleet.kill(i);
        await Bun.sleep(1_000 + random() * 2_000); // the replica stays dead this long
        await fleet.restart(i);
        return `replica ${i}`;
      },
      "restart Redis empty": () => redis.restartEmpty(random),
      ...(redis.failover ? { "Sentinel failover": redis.failover } : {}),
      "stop S3": async () => {
        await s3.stop();
        await Bun.sleep(3_000 + random() * 3_000);
        await s3.start();
        return "";
      },
      "upstream hangs": async () => {
        await upstream.setFault({ kind: "hang" });
        await Bun.sleep(3_000 + random() * 3_000);
        await upstream.setFault(null);
        return "";
      },
    };
    const chaos = (async () => {
      // Faults one at a time in a seeded order, with quiet gaps between them, until the end.
      while (Date.now() < deadline - SETTLE_MS) {
        const order = Object.keys(faults).sort(() => random() - 0.5);
        for (const fault of order) {
          // Quiet time between faults, where the one-GET-per-blob rule is held strictly.
          await Bun.sleep(SETTLE_MS + 2_000 + random() * 3_000);
          if (Date.now() > deadline - SETTLE_MS) break;
          const window: Window = { fault, start: Date.now(), end: 0 };
          windows.push(window);
          const detail = await faults[fault]!();
          window.end = Date.now();
          console.log(`chaos ${mode}: ${fault} ${detail} at +${((window.start - started) / 1000).toFixed(1)}s for ${((window.end - window.start) / 1000).toFixed(1)}s`);
        }
      }
    })();
    // Images join the pool one by one over the run, so cold pulls meet the faults too.
    const released = () => Math.min(images.length, 2 + Math.floor(((Date.now() - started) / (SECONDS * 1000)) * (images.length - 1)));
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      const pick = prng(SEED + c + 1);
      while (Date.now() < deadline) {
        const entry = images[Math.floor(pick() * released())]!;
        const record = await dockerPull(fleet.lbUrl, entry, warm.has(entry.name));
        pulls.push(record);
        if (record.ok) warm.add(entry.name);
      }
    });
    await Promise.all([chaos, ...clients]);

    // Figures.
    const hangs = windows.filter((w) => w.fault === "upstream hangs");
    const overlapsHang = (p: PullRecord) => hangs.some((w) => p.start < w.end + SETTLE_MS && p.end > w.start);
    const failed = pulls.filter((p) => !p.ok);
    const unservable = failed.filter((p) => !p.warm && overlapsHang(p) && p.corrupt.length === 0);
    const inWindow = (t: number) => windows.some((w) => t >= w.start - 1_000 && t <= w.end + SETTLE_MS);
    // Blob bytes from upstream: CDN GETs, and ranged resumes the harness front answers itself.
    const gets = upstream.log.filter((e) => e.method === "GET" && e.path.includes("/blobs/") && (e.status === 200 || e.status === 206));
    const byBlob = new Map<string, number[]>();
    for (const e of gets) {
      const hex = /[0-9a-f]{64}/.exec(e.path)?.[0];
      if (hex) byBlob.set(hex, [...(byBlob.get(hex) ?? []), e.time]);
    }
    const repeated = [...byBlob].filter(([, times]) => times.filter((t) => !inWindow(t)).length > 1).map(([hex, times]) => `${hex.slice(0, 12)}: ${times.map((t) => `+${((t - started) / 1000).toFixed(1)}s`).join(" ")}`);
    const excusedGets = [...byBlob.values()].reduce((n, times) => n + Math.max(0, times.length - 1), 0);
    let quietMs = 0;
    for (let t = started; t < Date.now(); t += 100) if (!inWindow(t)) quietMs += 100;
    console.log(
      `chaos ${mode}: ${pulls.length} pulls (${pulls.filter((p) => !p.warm).length} cold, ${pulls.filter((p) => p.warm).length} warm; ${images.length} images, ${images.filter((i) => i.big).length} of 24 MiB), ${pulls.filter((p) => p.ok).length} ok, ${failed.length} failed ` +
        `(${unservable.length} cold during an upstream hang), ${pulls.reduce((n, p) => n + p.retries, 0)} retried steps; ` +
        `${windows.length} faults, quiet ${(quietMs / 1000).toFixed(0)} s of ${((Date.now() - started) / 1000).toFixed(0)} s; ${gets.length} upstream blob GETs for ${byBlob.size} blobs (${excusedGets} repeated, all inside fault windows unless listed); ` +
        `S3 uploads left pending: ${await s3.pendingUploads()}`,
    );

    // After the run: nothing held, nothing half-written.
    await waitFor(
      async () => {
        for (const r of fleet.replicas) {
          const status = (await (await fetch(`${r.url}/api/status`)).json()) as { downloads: unknown[] };
          if (status.downloads.length) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: "downloads over" },
    );
    let leases: string[] = [];
    await waitFor(async () => (leases = await redis.lockKeys()).length === 0, { timeoutMs: 1_000, intervalMs: 100, what: "leases released" }).catch(() => {});
    const temps = fleet.cacheDirs.flatMap((dir) => readdirSync(join(dir, "tmp")).map((f) => `${dir}/tmp/${f}`));
    // Nothing in S3 that is not whole: every object visible there hashes to the digest it is stored under.
    const partial: string[] = [];
    for (const key of await s3.listKeys()) {
      const hex = /[0-9a-f]{64}/.exec(key)?.[0];
      if (hex && sha256(await s3.read(key)) !== `sha256:${hex}`) partial.push(key);
    }

    expect(failed.filter((p) => !unservable.includes(p)).map((p) => `${p.name} (warm: ${p.warm}) at +${((p.start - started) / 1000).toFixed(1)}s: ${p.corrupt.join("; ") || p.error}`)).toEqual([]);
    expect(pulls.flatMap((p) => p.corrupt)).toEqual([]);
    expect(repeated).toEqual([]);
    expect(leases).toEqual([]);
    expect(temps).toEqual([]);
    expect(partial).toEqual([]);
    expect(pulls.filter((p) => p.ok).length).toBeGreaterThan(0);
  } finally {
    await upstream.setFault(null);
    await s3.start();
    await fleet.stop();
  }
}

describe("chaos: the whole fleet under faults", () => {
  test(
    "Redis behind Sentinel",
    async () => {
      const set: RedisSentinelSet = await startRedisSentinel();
      try {
        await chaosRun("sentinel", {
          toml: `sentinels = ["${set.sentinel}"]\nsentinel_name = "${set.name}"`,
          async restartEmpty() {
            const master = await set.master();
            await master.restart();
            return `master :${master.port}`;
          },
          async failover() {
            await set.failover();
            return `to :${(await set.master()).port}`;
          },
          async lockKeys() {
            const master = await set.master();
            const client = new Redis(master.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
            try {
              await client.connect();
              return await client.keys("ferry:lock:*");
            } finally {
              client.disconnect();
            }
          },
          dispose: () => set.dispose(),
        });
      } finally {
        await set.dispose();
      }
    },
    SECONDS * 1000 + 180_000,
  );

  test(
    "Redis Cluster",
    async () => {
      const cluster: RedisCluster = await startRedisCluster({ masters: 3 });
      try {
        await chaosRun("cluster", {
          toml: `cluster_nodes = ${JSON.stringify(cluster.nodes)}`,
          async restartEmpty(random) {
            const master = cluster.masters[Math.floor(random() * cluster.masters.length)]!;
            await master.restart(); // nodes.conf keeps its slots; its keys are gone
            await cluster.waitHealthy();
            return `master :${master.port}`;
          },
          async lockKeys() {
            const client = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: Number(n.split(":")[1]) })));
            try {
              const keys = await Promise.all(client.nodes("master").map((node) => node.keys("ferry:lock:*")));
              return keys.flat();
            } finally {
              client.disconnect();
            }
          },
          dispose: () => cluster.dispose(),
        });
      } finally {
        await cluster.dispose();
      }
    },
    SECONDS * 1000 + 180_000,
  );
});
