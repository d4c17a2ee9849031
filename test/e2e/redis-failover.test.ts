// Issue 17 (found by the chaos run's Sentinel failover): after SENTINEL FAILOVER ferry
// writes its shared state to the new master, not to the demoted one. Real redis-server
// master + replica + redis-sentinel on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, hubRegistry } from "../harness/oci.ts";
import { waitFor } from "../harness/proc.ts";
import { startRedisSentinel, type RedisSentinelSet } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

let upstream: Upstream;
let set: RedisSentinelSet;
let image: BuiltImage;
let ferry: FerryProcess;

beforeAll(async () => {
  [upstream, set] = await Promise.all([startUpstream(), startRedisSentinel()]);
  image = await fiveLayer({ seed: "failover" });
  await upstream.push(image, "library/failover:before");
  await upstream.push(image, "library/failover:after");
  ferry = await startFerry({ config: `[redis]\nsentinels = ["${set.sentinel}"]\nsentinel_name = "${set.name}"\n${hubRegistry(upstream.url)}` });
}, 120_000);

afterAll(async () => {
  await ferry?.stop();
  await Promise.all([upstream?.stop(), set?.dispose()]);
});

async function tagIn(url: string, tag: string): Promise<string | undefined> {
  const direct = new Redis(url);
  try {
    const text = await direct.get(`ferry:tag:{docker.io/library/failover}:${tag}`);
    return text ? (JSON.parse(text) as { digest: string }).digest : undefined;
  } finally {
    direct.disconnect();
  }
}

describe("Sentinel failover", () => {
  test("a tag pulled after the failover is written to the new master", async () => {
    const before = await fetch(`${ferry.url}/v2/library/failover/manifests/before`, { headers: { Accept: ACCEPT } });
    expect(before.headers.get("docker-content-digest")).toBe(image.manifestDigest);
    expect(await tagIn((await set.master()).url, "before")).toBe(image.manifestDigest);
    await set.failover();
    const master = await set.master();
    // ferry's connection (CLIENT SETNAME ferry) moves to the new master by itself.
    const ferryClients = async (url: string) => {
      const direct = new Redis(url);
      try {
        return ((await direct.client("LIST")) as string).split("\n").filter((l) => l.includes("name=ferry")).length;
      } finally {
        direct.disconnect();
      }
    };
    const old = set.servers.find((s) => s !== master)!;
    await waitFor(async () => (await ferryClients(master.url)) > 0 && (await ferryClients(old.url)) === 0, { timeoutMs: 10_000, intervalMs: 100, what: "ferry connected to the new master only" });
    const r = await fetch(`${ferry.url}/v2/library/failover/manifests/after`, { headers: { Accept: ACCEPT } });
    expect(r.headers.get("docker-content-digest")).toBe(image.manifestDigest);
    expect(await tagIn(master.url, "after")).toBe(image.manifestDigest);
    expect(ferry.logs()).not.toContain("READONLY");
  }, 60_000);
});
