// Issue 17.1: ferry on a real 3-master Redis Cluster (redis-server, `redis-cli --cluster
// create`, no replicas, cluster-require-full-coverage no). What one replica learns the
// others use; with one master SIGKILLed the keys of the other masters' slots keep
// working and every pull still succeeds; a Redis command error is logged as itself.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, hubRegistry, sha256 } from "../harness/oci.ts";
import { startRedisCluster, type RedisCluster } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let cluster: RedisCluster;
const names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
const images: Record<string, BuiltImage> = {};
const replicas: FerryProcess[] = [];

const config = () => `[redis]\ncluster_nodes = ${JSON.stringify(cluster.nodes)}\nlock_lease = "3s"\n${hubRegistry(upstream.url)}`;

/** A docker-style pull by tag: the manifest (by tag, then by digest) and every blob, checked. */
async function pull(ferry: FerryProcess, name: string): Promise<string[]> {
  const image = images[name]!;
  const problems: string[] = [];
  const byTag = await fetch(`${ferry.url}/v2/library/${name}/manifests/latest`, { headers: { Accept: ACCEPT } });
  await byTag.arrayBuffer();
  if (byTag.status !== 200 || byTag.headers.get("docker-content-digest") !== image.manifestDigest) problems.push(`${name} tag: ${byTag.status}`);
  const byDigest = await fetch(`${ferry.url}/v2/library/${name}/manifests/${image.manifestDigest}`, { headers: { Accept: ACCEPT } });
  if (sha256(await byDigest.arrayBuffer()) !== image.manifestDigest) problems.push(`${name} manifest by digest: ${byDigest.status}`);
  for (const blob of image.blobs) {
    const r = await fetch(`${ferry.url}/v2/library/${name}/blobs/${blob.digest}`);
    if (sha256(await r.arrayBuffer()) !== blob.digest) problems.push(`${name} blob ${blob.digest}: ${r.status}`);
  }
  return problems;
}

const manifestGets = (name: string) => upstream.count({ server: "front", method: "GET", pathIncludes: `/library/${name}/manifests/` });

beforeAll(async () => {
  [upstream, cluster] = await Promise.all([startUpstream(), startRedisCluster({ masters: 3 })]);
  for (const name of names) {
    images[name] = await fiveLayer({ seed: `cluster-${name}` });
    await upstream.push(images[name]!, `library/${name}:latest`);
  }
  replicas.push(...(await Promise.all([startFerry({ config: config() }), startFerry({ config: config() })])));
}, 180_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
  await Promise.all([upstream?.stop(), cluster?.dispose()]);
});

describe("Redis Cluster", () => {
  test("what one replica fetched, another serves from the cluster without asking upstream", async () => {
    const [a, b] = replicas as [FerryProcess, FerryProcess];
    for (const name of names) expect(await pull(a, name)).toEqual([]);
    upstream.clearLog();
    for (const name of names) {
      const r = await fetch(`${b.url}/v2/library/${name}/manifests/latest`, { headers: { Accept: ACCEPT } });
      expect(r.headers.get("docker-content-digest")).toBe(images[name]!.manifestDigest);
      expect(sha256(await r.arrayBuffer())).toBe(images[name]!.manifestDigest);
      expect({ name, gets: manifestGets(name) }).toEqual({ name, gets: 0 });
    }
    // The catalog is the shared one: B lists what A cached.
    const catalog = (await (await fetch(`${b.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual(expect.arrayContaining(names.map((n) => `library/${n}`)));
    const logs = replicas.map((r) => r.logs()).join("\n");
    expect(logs).not.toContain("redis unavailable");
    expect(logs).not.toContain("redis command failed");
  }, 60_000);

  test("a Redis command error is logged as the command and Redis's error, not as an outage", async () => {
    const [a] = replicas as [FerryProcess];
    // A key of the wrong type where ferry keeps a repository's tag set: SADD answers WRONGTYPE.
    const direct = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: Number(n.split(":")[1]) })));
    try {
      await direct.set("ferry:tags:{docker.io/library/alpha}", "not a set");
    } finally {
      direct.disconnect();
    }
    const before = a.logs().length;
    await upstream.push(images.alpha!, "library/alpha:other");
    const r = await fetch(`${a.url}/v2/library/alpha/manifests/other`, { headers: { Accept: ACCEPT } });
    expect(r.headers.get("docker-content-digest")).toBe(images.alpha!.manifestDigest);
    expect(await a.waitForLog("WRONGTYPE")).toBe(true);
    const lines = a.logs().slice(before).split("\n").filter((l) => l.includes("redis"));
    expect(lines.some((l) => l.includes("redis command failed") && l.includes("WRONGTYPE") && /"command":"sadd"/i.test(l))).toBe(true);
    expect(lines.filter((l) => l.includes("redis unavailable"))).toEqual([]);
  }, 60_000);

  test("one master SIGKILLed: every pull succeeds, and keys on the surviving masters keep being shared", async () => {
    const [a, b] = replicas as [FerryProcess, FerryProcess];
    const victim = await cluster.masterFor("docker.io/library/alpha");
    const owners = new Map<string, number>();
    for (const name of names) owners.set(name, (await cluster.masterFor(`docker.io/library/${name}`)).port);
    const surviving = names.filter((n) => owners.get(n) !== victim.port);
    expect(surviving.length).toBeGreaterThan(0);
    await victim.kill();
    await cluster.waitHealthy();
    // A fresh replica with an empty disk: whatever it gets without upstream came from Redis.
    const c = await startFerry({ config: config() });
    replicas.push(c);
    upstream.clearLog();
    for (const name of names) for (const via of [a, b, c]) expect(await pull(via, name)).toEqual([]);
    for (const name of surviving) expect({ name, gets: manifestGets(name) }).toEqual({ name, gets: 0 });
    // A tag first fetched now, on a surviving slot, is shared too.
    const fresh = surviving[0]!;
    await upstream.push(images[fresh]!, `library/${fresh}:after-kill`);
    await fetch(`${a.url}/v2/library/${fresh}/manifests/after-kill`, { headers: { Accept: ACCEPT } }).then((r) => r.arrayBuffer());
    upstream.clearLog();
    const r = await fetch(`${c.url}/v2/library/${fresh}/manifests/after-kill`, { headers: { Accept: ACCEPT } });
    expect(r.headers.get("docker-content-digest")).toBe(images[fresh]!.manifestDigest);
    expect(manifestGets(fresh)).toBe(0);
  }, 120_000);
});
