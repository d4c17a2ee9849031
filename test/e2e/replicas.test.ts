// Issue 4: three ferry replicas behind nginx act as one mirror through Redis (metadata,
// tokens, leases) and a real S3 API server (blobs). Upstream = real distribution; the
// upstream's own access log counts what was fetched.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ctrPull, podmanPull, skopeoCopy, startDockerd } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startNginx, type NginxProcess } from "../harness/nginx.ts";
import { freePort, waitFor } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startS3, type S3Server } from "../harness/s3.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, sha256 } from "../harness/oci.ts";


let upstream: Upstream;
let redis: RedisServer;
let s3: S3Server;
let replicas: FerryProcess[] = [];
let lb: NginxProcess;
let lbUrl: string;
let lbHost: string;
const scratch = mkdtempSync(join(tmpdir(), "ferry-replicas-"));
const cacheDirs = [0, 1, 2].map((i) => join(scratch, `replica-${i}`));
let img: Record<"cold" | "wipe" | "outage" | "s3down" | "killed" | "redirect", BuiltImage>;

function replicaConfig(extra = ""): string {
  return [
    `[redis]\nurl = "${redis.url}"\nlock_lease = "3s"`,
    `[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\nregion = "us-east-1"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\nforce_path_style = true\nprefix = "ferry"\n${extra}`,
    `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\ntimeout = "5s"\nfailure_cooldown = "1s"`,
  ].join("\n");
}

async function startReplica(i: number, port?: number): Promise<FerryProcess> {
  return startFerry({ config: replicaConfig(), cacheDir: cacheDirs[i], port });
}

function blobGets(digest: string): number {
  return upstream.count({ server: "cdn", method: "GET", pathIncludes: digest.slice(7) });
}

beforeAll(async () => {
  // s3rver, for its faster start: these tests watch replicas share blobs, not S3's own
  // semantics; atomic completion, aborts and signatures are tested on Ceph's radosgw (s3-store/s3-tier tests).
  [upstream, redis, s3] = await Promise.all([startUpstream(), startRedis(), startS3({ bucket: "ferry-blobs" })]);
  img = {
    cold: await bigLayer({ seed: "replicas-cold", sizeMiB: 20 }),
    wipe: await fiveLayer({ seed: "replicas-wipe" }),
    outage: await fiveLayer({ seed: "replicas-outage" }),
    s3down: await fiveLayer({ seed: "replicas-s3down" }),
    killed: await bigLayer({ seed: "replicas-killed", sizeMiB: 60 }),
    redirect: await fiveLayer({ seed: "replicas-redirect" }),
  };
  for (const [name, image] of Object.entries(img)) await upstream.push(image, `library/${name}:latest`);
  replicas = await Promise.all([0, 1, 2].map((i) => startReplica(i)));
  const port = await freePort();
  lb = await startNginx(
    `upstream ferry { ${replicas.map((r) => `server ${r.host} max_fails=1 fail_timeout=5s;`).join(" ")} }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://ferry;
      proxy_set_header Host $http_host;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_connect_timeout 2s;
    }
  }`,
    [port],
  );
  lbUrl = `http://127.0.0.1:${port}`;
  lbHost = `127.0.0.1:${port}`;
}, 300_000);

afterAll(async () => {
  await lb?.stop();
  await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
  await Promise.all([upstream?.stop(), redis?.dispose(), s3?.stop()]);
  rmSync(scratch, { recursive: true, force: true });
});

describe("replicas behind a load balancer", () => {
  test("20 concurrent cold pulls through the LB: one upstream GET per blob, every digest right", async () => {
    upstream.clearLog();
    const pulls = Array.from({ length: 20 }, (_, i) =>
      skopeoCopy(`docker://${lbHost}/library/cold:latest`, `dir:${join(scratch, `cold-${i}`)}`, ["--src-tls-verify=false", "--retry-times", "2"]),
    );
    const results = await Promise.all(pulls);
    if (results.some((r) => r.code !== 0)) {
      for (const [i, f] of replicas.entries()) console.log(`--- replica ${i}\n` + f.logs().split("\n").filter((l) => /"level":(40|50)/.test(l) || /blob download/.test(l)).join("\n"));
    }
    for (const r of results) {
      expect({ code: r.code, err: r.code ? r.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
      expect(r.digest).toBe(img.cold.manifestDigest);
    }
    for (const blob of img.cold.blobs) expect({ blob: blob.digest, gets: blobGets(blob.digest) }).toEqual({ blob: blob.digest, gets: 1 });
    // All three replicas took part, and the shared store holds every blob.
    const served = new Set(lb.accessLog().filter((l) => l.uri.includes("/library/cold/")).map((l) => l.upstream));
    expect(served.size).toBe(3);
    const keys = await s3.listKeys("ferry/");
    for (const blob of img.cold.blobs) expect(keys).toContain(`ferry/blobs/docker.io/sha256/${blob.digest.slice(7, 9)}/${blob.digest.slice(7)}`);
  }, 240_000);

  test("a replica whose local disk was wiped serves from S3 without asking upstream", async () => {
    const via = replicas[0]!;
    for (const blob of img.wipe.blobs) await fetch(`${via.url}/v2/library/wipe/blobs/${blob.digest}`).then((r) => r.arrayBuffer());
    await fetch(`${via.url}/v2/library/wipe/manifests/latest`, { headers: { Accept: ACCEPT } }).then((r) => r.arrayBuffer());
    const port = via.port;
    await via.stop();
    rmSync(cacheDirs[0]!, { recursive: true, force: true });
    replicas[0] = await startReplica(0, port);
    upstream.clearLog();
    const m = await fetch(`${replicas[0]!.url}/v2/library/wipe/manifests/latest`, { headers: { Accept: ACCEPT } });
    expect(m.headers.get("docker-content-digest")).toBe(img.wipe.manifestDigest);
    for (const blob of img.wipe.blobs) {
      const r = await fetch(`${replicas[0]!.url}/v2/library/wipe/blobs/${blob.digest}`);
      expect(sha256(await r.arrayBuffer())).toBe(blob.digest);
    }
    expect(upstream.entries({ server: "cdn" }).map((e) => e.path)).toEqual([]);
    expect(upstream.entries({ server: "front", method: "GET" }).map((e) => `${e.status} ${e.path}`)).toEqual([]);
  }, 60_000);

  test("Redis restarted mid-run: pulls keep succeeding, and the replicas rejoin", async () => {
    await redis.kill();
    const during = await skopeoCopy(`docker://${lbHost}/library/outage:latest`, `dir:${join(scratch, "outage-1")}`, ["--src-tls-verify=false"]);
    expect({ code: during.code, err: during.code ? during.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
    expect(during.digest).toBe(img.outage.manifestDigest);
    await redis.start();
    // ioredis reconnects with a gentle backoff: wait until every replica says it is back.
    await waitFor(
      async () => {
        const checks = await Promise.all(replicas.map(async (r) => ((await (await fetch(`${r.url}/readyz`)).json()) as { checks: { redis?: { ok: boolean } } }).checks.redis?.ok === true));
        return checks.every(Boolean);
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "every replica to reconnect to Redis" },
    );
    const after = await skopeoCopy(`docker://${lbHost}/library/outage:latest`, `dir:${join(scratch, "outage-2")}`, ["--src-tls-verify=false"]);
    expect(after.code).toBe(0);
    // State recovers: a new mapping written now lands in Redis again.
    await fetch(`${lbUrl}/v2/library/wipe/manifests/latest`, { headers: { Accept: ACCEPT } }).then((r) => r.arrayBuffer());
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      const tagKeys = await client.keys("ferry:tag:{docker.io/library/*");
      expect(tagKeys.length).toBeGreaterThan(0);
    } finally {
      client.disconnect();
    }
    const logs = replicas.map((r) => r.logs()).join("\n");
    expect(logs).toContain("redis unavailable; continuing with per-process state");
  }, 120_000);

  test("S3 stopped mid-run: pulls keep succeeding from upstream and local disk", async () => {
    await s3.stop();
    try {
      const r = await skopeoCopy(`docker://${lbHost}/library/s3down:latest`, `dir:${join(scratch, "s3down")}`, ["--src-tls-verify=false"]);
      expect({ code: r.code, err: r.code ? r.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
      expect(r.digest).toBe(img.s3down.manifestDigest);
    } finally {
      await s3.start();
    }
    const again = await skopeoCopy(`docker://${lbHost}/library/s3down:latest`, `dir:${join(scratch, "s3down-2")}`, ["--src-tls-verify=false"]);
    expect(again.code).toBe(0);
    expect(replicas.map((r) => r.logs()).join("\n")).toContain("shared blob store unavailable");
  }, 120_000);

  test("a replica SIGKILLed mid-download: its lease expires, another replica finishes, no partial blob is shared", async () => {
    const blob = img.killed.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const victim = replicas[1]!;
    const r = await fetch(`${victim.url}/v2/library/killed/blobs/${blob.digest}`);
    const reader = r.body!.getReader();
    for (let got = 0; got < 5 * 1024 * 1024; ) {
      const { value, done } = await reader.read();
      if (done) break;
      got += value.byteLength;
    }
    await victim.stop("SIGKILL");
    await reader.cancel().catch(() => {});
    const objectKey = `ferry/blobs/docker.io/sha256/${blob.digest.slice(7, 9)}/${blob.digest.slice(7)}`;
    expect(await s3.listKeys(objectKey)).toEqual([]);
    // A client retrying through the load balancer gets the whole, verified blob.
    const started = performance.now();
    const retry = await fetch(`${lbUrl}/v2/library/killed/blobs/${blob.digest}`);
    expect(retry.status).toBe(200);
    expect(sha256(await retry.arrayBuffer())).toBe(blob.digest);
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(blobGets(blob.digest)).toBe(2); // the dead replica's, then the one that took over
    // The client's last byte goes out once the digest is verified; the shared copy is
    // published right after.
    const published = await waitFor(async () => {
      const keys = await s3.listKeys(objectKey);
      return keys.length ? keys : undefined;
    }, { timeoutMs: 10_000, intervalMs: 100, what: "the shared copy to be published" });
    expect(published).toEqual([objectKey]);
    const skopeo = await skopeoCopy(`docker://${lbHost}/library/killed:latest`, `dir:${join(scratch, "killed")}`, ["--src-tls-verify=false", "--retry-times", "2"]);
    expect(skopeo.code).toBe(0);
    expect(skopeo.digest).toBe(img.killed.manifestDigest);
    replicas[1] = await startReplica(1, victim.port);
  }, 120_000);
});

describe("redirect = true", () => {
  test("docker, ctr and podman follow the 307 to S3 and succeed", async () => {
    const ferry = await startFerry({ config: replicaConfig("redirect = true"), cacheDir: join(scratch, "redirect") });
    const dockerd = await startDockerd({ mirrors: [ferry.url] });
    try {
      // First pull fills S3 (streamed from upstream); later pulls are redirected to S3.
      const warm = await skopeoCopy(`docker://${ferry.host}/library/redirect:latest`, `dir:${join(scratch, "redirect-warm")}`, ["--src-tls-verify=false"]);
      expect(warm.code).toBe(0);
      rmSync(join(scratch, "redirect", "blobs"), { recursive: true, force: true }); // only S3 has them now
      const blob = img.redirect.blobs[0]!;
      const probe = await fetch(`${ferry.url}/v2/library/redirect/blobs/${blob.digest}`, { redirect: "manual" });
      expect(probe.status).toBe(307);
      expect(probe.headers.get("location")).toStartWith(s3.endpoint);
      upstream.clearLog();
      const d = await dockerd.pull("redirect");
      expect({ code: d.code, err: d.code ? d.stderr : "" }).toEqual({ code: 0, err: "" });
      expect(d.digest).toBe(img.redirect.manifestDigest);
      const c = await ctrPull({ ref: "docker.io/library/redirect:latest", hosts: { "docker.io": ferry.url } });
      expect({ code: c.code, err: c.code ? c.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
      expect(c.digest).toBe(img.redirect.manifestDigest);
      const p = await podmanPull({ ref: "docker.io/library/redirect:latest", registries: [{ prefix: "docker.io", location: "docker.io", mirrors: [{ location: ferry.host, insecure: true }] }] });
      expect({ code: p.code, err: p.code ? p.stderr.slice(-800) : "" }).toEqual({ code: 0, err: "" });
      expect(p.digest).toBe(img.redirect.manifestDigest);
      expect(upstream.count({ server: "cdn" })).toBe(0);
    } finally {
      await dockerd.stop();
      await ferry.stop();
    }
  }, 240_000);
});
