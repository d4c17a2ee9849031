// `ferry check`: the config is valid (already, or we would not be here); then every
// upstream endpoint, Redis, S3 and the HTTPS certificate is probed, and a table says what works.
import { mkdir } from "node:fs/promises";
import { FsBlobStore } from "../cache/fs-blob-store.ts";
import { SharedRedis } from "../redis/redis-client.ts";
import { S3BlobStore } from "../cache/s3-blob-store.ts";
import { DEFAULT_HEALTH_POLICY, type Config } from "../config/config.ts";
import { createLogger } from "../observe/logger.ts";
import { TokenCache } from "../upstream/auth.ts";
import { Endpoint } from "../upstream/endpoint.ts";
import { EndpointHealth } from "../upstream/health.ts";
import { TagPolicy } from "../registry/tag-policy.ts";
import { formatDuration } from "../ui/format.ts";
import { parseReference } from "../protocol/image-reference.ts";
import { certificateProbes } from "../tls/https-check.ts";
import { table } from "./table.ts";

interface Probe {
  what: string;
  target: string;
  ok: boolean;
  detail: string;
}

export async function check(config: Config, out: (line: string) => void, images: string[] = []): Promise<number> {
  const probes: Promise<Probe>[] = [];
  probes.push(probeCacheDir(config.cache.dir));
  if (config.redis) probes.push(probeRedis(config));
  if (config.s3) probes.push(probeS3(config));
  if (config.server.tls) probes.push(...certificateProbes(config));
  const tokens = new TokenCache();
  for (const registry of config.registries) {
    const urls = new Map([...registry.endpoints, ...(registry.blobEndpoints ?? [])].map((e) => [e.url, e]));
    for (const e of urls.values()) probes.push(probeEndpoint(registry.name, new Endpoint(e, tokens, new EndpointHealth(DEFAULT_HEALTH_POLICY))));
  }
  const results = await Promise.all(probes);
  out(table([["CHECK", "TARGET", "RESULT", "DETAIL"], ...results.map((p) => [p.what, p.target, p.ok ? "ok" : "FAIL", p.detail])]));
  out(`\n${tagPolicies(config, images)}`);
  const failed = results.filter((p) => !p.ok).length;
  out(failed ? `\n${failed} of ${results.length} checks failed` : `\nall ${results.length} checks passed`);
  return failed ? 1 : 0;
}

/** The tag policy table: the configured rules, or which policy each named tag gets. */
function tagPolicies(config: Config, images: string[]): string {
  const ttl = (ms: number | undefined) => (ms === undefined ? "" : formatDuration(ms));
  if (images.length === 0) {
    const rows = [["TAG POLICY", "REPOSITORIES", "TAG_TTL", "IMMUTABLE_TAGS"], ["cache.tag_ttl", "*", ttl(config.cache.tagTtlMs), ""]];
    for (const r of config.registries) {
      const p = r.tagPolicy;
      if (p.tagTtlMs !== undefined || p.immutableTags?.length) rows.push([r.name, "**", ttl(p.tagTtlMs), (p.immutableTags ?? []).join(" ")]);
      p.rules.forEach((rule, i) => rows.push([`${r.name} tag_policy[${i}]`, rule.repositories.join(" "), ttl(rule.tagTtlMs), (rule.immutableTags ?? []).join(" ")]));
    }
    return table(rows);
  }
  const policy = new TagPolicy(config.cache.tagTtlMs, config.registries);
  const rows = [["IMAGE", "TAG POLICY", "RULE"]];
  for (const image of images) {
    const ref = parseReference(image);
    if (typeof ref === "string") rows.push([image, "invalid", ref]);
    else if (ref.digest) rows.push([image, "digest: never revalidated", ""]);
    else {
      const d = policy.resolve(ref.domain, ref.path, ref.tag ?? "latest");
      rows.push([`${ref.domain}/${ref.path}:${ref.tag ?? "latest"}`, d.immutable ? "immutable: never revalidated" : `revalidated after ${formatDuration(d.ttlMs)}`, d.rule]);
    }
  }
  return table(rows);
}

async function timed<T>(work: () => Promise<T>): Promise<{ value?: T; error?: Error; ms: number }> {
  const started = performance.now();
  try {
    const value = await work();
    return { value, ms: Math.round(performance.now() - started) };
  } catch (error) {
    return { error: error as Error, ms: Math.round(performance.now() - started) };
  }
}

async function probeCacheDir(dir: string): Promise<Probe> {
  await mkdir(dir, { recursive: true }).catch(() => {});
  const result = await new FsBlobStore(dir).checkWritable();
  return { what: "cache", target: dir, ok: result.ok, detail: result.ok ? "writable" : (result.error ?? "not writable") };
}

async function probeRedis(config: Config): Promise<Probe> {
  const redis = new SharedRedis(config.redis!, createLogger("silent"));
  const target = config.redis!.url?.replace(/\/\/[^@]*@/, "//***@") ?? "sentinel/cluster";
  try {
    const ready = await redis.waitReady(3_000);
    if (!ready) return { what: "redis", target, ok: false, detail: "not reachable within 3 s" };
    const r = await timed(() => redis.client.ping());
    return { what: "redis", target, ok: r.value === "PONG", detail: r.error ? r.error.message : `PING ${r.ms} ms` };
  } finally {
    await redis.close();
  }
}

async function probeS3(config: Config): Promise<Probe> {
  const s3 = config.s3!;
  const store = new S3BlobStore(s3);
  const r = await timed(() => store.stat({ registry: "ferry-check", digest: `sha256:${"0".repeat(64)}` }));
  return { what: "s3", target: `${s3.endpoint ?? "aws"} bucket ${s3.bucket}`, ok: !r.error, detail: r.error ? r.error.message : `HEAD ${r.ms} ms` };
}

/** GET /v2/ with the token flow (anonymous, or with the endpoint's credentials). */
async function probeEndpoint(registry: string, endpoint: Endpoint): Promise<Probe> {
  const r = await timed(() => endpoint.request({ method: "GET", path: "/v2/" }));
  const base = { what: `registry ${registry}`, target: endpoint.url };
  if (r.error) return { ...base, ok: false, detail: r.error.message };
  const status = r.value!.status;
  await r.value!.body?.cancel();
  if (status === 200) return { ...base, ok: true, detail: `/v2/ 200 in ${r.ms} ms` };
  if (status === 401) return { ...base, ok: endpoint.config.username === undefined, detail: endpoint.config.username === undefined ? `/v2/ needs a token per repository (${r.ms} ms)` : "credentials refused" };
  return { ...base, ok: false, detail: `/v2/ answered ${status}` };
}
