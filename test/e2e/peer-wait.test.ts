// Issue 17.3: a replica asked for a blob another replica is downloading must not leave
// its client in silence until the server's idle timeout cuts it off. Two replicas
// (Redis leases, S3 = the s3rver harness), idle_timeout 2 s, the upstream behind a
// throttle proxy so the layer takes ~6 s to arrive: the waiting replica streams it from
// the replica holding the lease, and upstream serves the blob once (its own log).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startThrottleProxy, type ThrottleProxy } from "../../bench/lib/throttle-proxy.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, type BuiltImage } from "../harness/images.ts";
import { sha256 } from "../harness/oci.ts";
import { waitFor } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startS3, type S3Server } from "../harness/s3.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let redis: RedisServer;
let s3: S3Server;
let throttle: ThrottleProxy;
let image: BuiltImage;
let config: string;
const replicas: FerryProcess[] = [];

beforeAll(async () => {
  [upstream, redis, s3, throttle] = await Promise.all([startUpstream(), startRedis(), startS3({ bucket: "ferry-peer" }), startThrottleProxy(1024 * 1024)]);
  image = await bigLayer({ seed: "peer-wait", sizeMiB: 6 });
  await upstream.push(image, "library/slow:latest");
  await upstream.push(await bigLayer({ seed: "peer-killed", sizeMiB: 6 }), "library/killed:latest");
  config = [
    `[redis]\nurl = "${redis.url}"\nlock_lease = "3s"`,
    `[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\nregion = "us-east-1"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\nforce_path_style = true`,
    `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\nproxy = "${throttle.url}"`,
  ].join("\n");
  replicas.push(...(await Promise.all([0, 1].map(() => startFerry({ config, server: `idle_timeout = "2s"` })))));
}, 120_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
  await Promise.all([upstream?.stop(), redis?.dispose(), s3?.stop(), throttle?.stop()]);
});

describe("waiting for another replica's download", () => {
  test("a layer slower than idle_timeout reaches the client of the waiting replica, fetched upstream once", async () => {
    const [a, b] = replicas as [FerryProcess, FerryProcess];
    const blob = image.blobs.reduce((x, y) => (x.size > y.size ? x : y));
    upstream.clearLog();
    const first = fetch(`${a.url}/v2/library/slow/blobs/${blob.digest}`).then(async (r) => ({ status: r.status, digest: sha256(await r.arrayBuffer()) }));
    // B is asked once A holds the download (it shows among A's downloads in progress).
    await waitFor(async () => ((await (await fetch(`${a.url}/api/status`)).json()) as { downloads: { digest: string }[] }).downloads.some((d) => d.digest === blob.digest), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: "A downloading the layer",
    });
    const started = performance.now();
    const second = await fetch(`${b.url}/v2/library/slow/blobs/${blob.digest}`)
      .then(async (r) => ({ status: r.status, digest: sha256(await r.arrayBuffer()) }))
      .catch((error: Error) => ({ status: 0, digest: `failed after ${Math.round(performance.now() - started)} ms: ${error.message}` }));
    if (second.status !== 200) for (const f of [a, b]) console.log(f.logs().split("\n").filter((l) => /"level":(40|50)|peer|blob/.test(l)).join("\n"));
    expect(second).toEqual({ status: 200, digest: blob.digest });
    expect(await first).toEqual({ status: 200, digest: blob.digest });
    expect(upstream.log.filter((e) => e.method === "GET" && (e.status === 200 || e.status === 206) && e.path.includes(blob.digest.slice(7))).length).toBe(1);
  }, 60_000);

  test("the holder SIGKILLed mid-stream: the waiting replica takes over from the byte it reached and shares the blob", async () => {
    // idle_timeout longer than the lease, so the waiting client outlasts the dead holder's lease.
    const [a, b] = await Promise.all([0, 1].map(() => startFerry({ config, server: `idle_timeout = "20s"` })));
    replicas.push(a!, b!);
    const killedImage = await bigLayer({ seed: "peer-killed", sizeMiB: 6 });
    const blob = killedImage.blobs.reduce((x, y) => (x.size > y.size ? x : y));
    upstream.clearLog();
    const first = fetch(`${a!.url}/v2/library/killed/blobs/${blob.digest}`).then((r) => r.arrayBuffer()).catch(() => undefined);
    await waitFor(async () => ((await (await fetch(`${a!.url}/api/status`)).json()) as { downloads: { digest: string }[] }).downloads.some((d) => d.digest === blob.digest), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: "A downloading the layer",
    });
    const response = await fetch(`${b!.url}/v2/library/killed/blobs/${blob.digest}`);
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const chunks: Uint8Array[] = [];
    let received = 0;
    let killed = false;
    for (let i = 0; i < 100_000; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.byteLength;
      if (!killed && received > 2 * 1024 * 1024) {
        killed = true;
        await a!.stop("SIGKILL");
      }
    }
    await first;
    expect(killed).toBe(true);
    expect(sha256(Buffer.concat(chunks))).toBe(blob.digest);
    // A's GET, then B's from where the bytes stopped (a Range, which the harness front
    // answers itself instead of redirecting to the CDN), not from the start.
    const gets = upstream.log.filter((e) => e.method === "GET" && (e.status === 200 || e.status === 206) && e.path.includes(blob.digest.slice(7)));
    expect(gets.map((e) => [e.status, e.headers.range?.replace(/\d+/, "N") ?? null])).toEqual([
      [200, null],
      [206, "bytes=N-"],
    ]);
    expect(Number(/\d+/.exec(gets[1]!.headers.range!)![0])).toBeGreaterThan(2 * 1024 * 1024);
    const objectKey = `blobs/docker.io/sha256/${blob.digest.slice(7, 9)}/${blob.digest.slice(7)}`;
    await waitFor(async () => (await s3.listKeys()).some((k) => k.endsWith(objectKey)), { timeoutMs: 10_000, intervalMs: 100, what: "the blob published to S3 by B" });
  }, 60_000);
});
