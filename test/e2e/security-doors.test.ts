// Issue 16, the doors: logins that are never checked, brute force, unbounded metric
// series, IPv6 clients, byte budgets that skip redirects, ferry's own tokens attacked, and
// a seeded header-mutation fuzz run. Every client here is told apart by X-Forwarded-For
// from 127.0.0.1, a trusted proxy in each config.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TokenSigner } from "../../src/access/tokens.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { ACCEPT, hubRegistry, OTHER_REGISTRIES_OFF } from "../harness/oci.ts";
import { rawRequest } from "../harness/raw-http.ts";
import { waitFor } from "../harness/proc.ts";
import { startRedis } from "../harness/redis.ts";
import { startS3, type S3Server } from "../harness/s3.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { runSeed } from "../harness/seeded.ts";

const SECRET = "d".repeat(40);
const STATIC_TOKEN = "doors-static-token-0123456789";
let hub: Upstream;
let quay: Upstream;
let image: BuiltImage;
let htpasswd: string;
const scratch = mkdtempSync(join(tmpdir(), "ferry-doors-"));
const TRUST = `trusted_proxies = ["127.0.0.1/32"]`;

beforeAll(async () => {
  [hub, quay] = await Promise.all([startUpstream(), startUpstream()]);
  image = await fiveLayer({ seed: "doors" });
  await hub.push(image, "library/five:latest");
  await quay.push(image, "org/public:1");
  htpasswd = join(scratch, "htpasswd");
  writeFileSync(htpasswd, `alice:${(await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 4 })).replace(/^\$2b\$/, "$2y$")}\n`);
}, 120_000);

afterAll(async () => {
  await Promise.all([hub?.stop(), quay?.stop()]);
  rmSync(scratch, { recursive: true, force: true });
});

const auth = (extra = "") => `[auth]\nhtpasswd = "${htpasswd}"\ntokens = ["${STATIC_TOKEN}"]\ntoken_secret = "${SECRET}"\n${extra}`;
const basic = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`;
const get = (ferry: FerryProcess, path: string, headers: Record<string, string> = {}) =>
  fetch(`${ferry.url}${path}`, { headers: { Accept: ACCEPT, ...headers }, signal: AbortSignal.timeout(20_000) });

async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  expect(typeof body.errors[0]!.message).toBe("string");
  return body.errors[0]!.code;
}

/** 401 with ferry's Bearer challenge and an OCI UNAUTHORIZED body. */
async function expectChallenge(res: Response, what: string): Promise<void> {
  expect({ what, status: res.status }).toEqual({ what, status: 401 });
  expect(res.headers.get("www-authenticate")).toStartWith('Bearer realm="');
  expect(await errorCode(res)).toBe("UNAUTHORIZED");
}

describe("logins count only once verified", () => {
  test("/v2/ with a wrong password is 401 + challenge, and a storm of them meets the limits", async () => {
    const ferry = await startFerry({ config: `${auth()}\n[limits]\nrequests_per_minute = 60\n${TRUST}\n${hubRegistry(hub.url)}` });
    try {
      await expectChallenge(await get(ferry, "/v2/", { Authorization: basic("alice", "guess-0"), "X-Forwarded-For": "203.0.113.10" }), "wrong password");
      await expectChallenge(await get(ferry, "/v2/", { Authorization: basic("mallory", "x"), "X-Forwarded-For": "203.0.113.10" }), "unknown user");
      await expectChallenge(await get(ferry, "/v2/", { Authorization: "Bearer not-a-token", "X-Forwarded-For": "203.0.113.10" }), "bad bearer");
      const statuses = new Map<number, number>();
      for (let i = 1; i <= 100; i++) {
        const r = await get(ferry, "/v2/", { Authorization: basic("alice", `guess-${i}`), "X-Forwarded-For": "203.0.113.10" });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429) expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
        await r.body?.cancel();
      }
      expect(statuses.get(200)).toBeUndefined();
      expect(statuses.get(429) ?? 0).toBeGreaterThan(80);
      // The right password still opens /v2/ from a client that did not storm.
      expect((await get(ferry, "/v2/", { Authorization: basic("alice", "wonderland"), "X-Forwarded-For": "198.51.100.20" })).status).toBe(200);
      expect((await get(ferry, "/v2/", { Authorization: `Bearer ${STATIC_TOKEN}`, "X-Forwarded-For": "198.51.100.20" })).status).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("passthrough: unchecked upstream credentials are not logged in and not exempt from limits", async () => {
    const ferry = await startFerry({
      config: [
        auth(),
        `[limits]\nrequests_per_minute = 5\nauthenticated_exempt = true\nlogin_failures = "3/15m"\n${TRUST}`,
        hubRegistry(hub.url),
        `[[registry]]\nname = "quay.io"\nendpoints = ["${quay.url}"]\nallow_private_redirects = true\nanonymous = true\npassthrough_auth = true`,
      ].join("\n"),
    });
    try {
      await expectChallenge(await get(ferry, "/v2/", { Authorization: basic("nobody", "nothing"), "X-Forwarded-For": "203.0.113.11" }), "unchecked upstream credentials on /v2/");
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await get(ferry, "/v2/quay.io/org/public/manifests/1", { Authorization: basic("nobody", `nothing-${i}`), "X-Forwarded-For": "203.0.113.12" });
        statuses.push(r.status);
        await r.body?.cancel();
      }
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(3);
      // A verified login is still exempt.
      for (let i = 0; i < 8; i++) expect((await get(ferry, "/v2/library/five/manifests/latest", { Authorization: basic("alice", "wonderland"), "X-Forwarded-For": "203.0.113.13" })).status).toBe(200);
      // Upstream logins the upstream refuses are failed logins: they back off like wrong passwords.
      const login = (user: string) => get(ferry, "/token?service=ferry", { Authorization: basic(user, "nope"), "X-Forwarded-For": "203.0.113.14" }).then((r) => r.status);
      expect([await login("u1"), await login("u2"), await login("u3"), await login("u4")]).toEqual([401, 401, 401, 429]);
      // The upstream's own user logs in from elsewhere as usual.
      expect(await get(ferry, "/token?service=ferry", { Authorization: basic("reader", "readpass"), "X-Forwarded-For": "203.0.113.15" }).then((r) => r.status)).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);
});

describe("brute force", () => {
  test("failed logins back off per client and per user name, on /token and /v2/ alike", async () => {
    const ferry = await startFerry({ config: `${auth()}\n[limits]\nlogin_failures = "5/15m"\n${TRUST}\n${hubRegistry(hub.url)}` });
    try {
      const token = (ip: string, user: string, password: string) => get(ferry, "/token?service=ferry&scope=repository:library/five:pull", { Authorization: basic(user, password), "X-Forwarded-For": ip });
      const seen: number[] = [];
      for (let i = 0; i < 5; i++) seen.push((await token("203.0.113.20", `user${i}`, "bad")).status);
      expect(seen).toEqual([401, 401, 401, 401, 401]);
      // That client is now backed off, whatever it tries and wherever.
      const locked = await token("203.0.113.20", "alice", "wonderland");
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(60);
      expect(await errorCode(locked)).toBe("TOOMANYREQUESTS");
      expect((await get(ferry, "/v2/", { Authorization: basic("alice", "other"), "X-Forwarded-For": "203.0.113.20" })).status).toBe(429);
      // One user name guessed from many clients is backed off too.
      for (let i = 0; i < 5; i++) expect((await token(`198.51.100.${30 + i}`, "bob", `guess${i}`)).status).toBe(401);
      expect((await token("198.51.100.40", "bob", "guess-again")).status).toBe(429);
      // Someone else, from elsewhere, logs in as usual.
      const ok = await token("198.51.100.50", "alice", "wonderland");
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { token: string }).token.split(".").length).toBe(3);
    } finally {
      await ferry.stop();
    }
  }, 60_000);

  test("with Redis, replicas share the back-off", async () => {
    const redis = await startRedis();
    const config = `${auth()}\n[redis]\nurl = "${redis.url}"\n[limits]\nlogin_failures = "3/15m"\n${TRUST}\n${hubRegistry(hub.url)}`;
    const [a, b] = await Promise.all([startFerry({ config }), startFerry({ config })]);
    try {
      const token = (f: FerryProcess, password: string) => get(f, "/token?service=ferry", { Authorization: basic("alice", password), "X-Forwarded-For": "203.0.113.60" });
      expect([(await token(a, "g1")).status, (await token(b, "g2")).status, (await token(a, "g3")).status]).toEqual([401, 401, 401]);
      const locked = await token(b, "g4");
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(60);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.dispose();
    }
  }, 60_000);

  test("/token, /ui, /api/*, /metrics and /v1/* have limits of their own", async () => {
    const ferry = await startFerry({
      config: `${auth()}\n[limits]\ntoken_requests_per_minute = 4\nadmin_requests_per_minute = 4\nsearch_requests_per_minute = 4\n${TRUST}\n${hubRegistry(hub.url)}`,
    });
    try {
      const cases: [string, Record<string, string>][] = [
        ["/token?service=ferry", {}],
        ["/api/status", { Authorization: basic("alice", "wonderland") }],
        ["/metrics", { Authorization: `Bearer ${STATIC_TOKEN}` }],
        ["/ui", { Authorization: `Bearer ${STATIC_TOKEN}` }],
        ["/v1/_ping", {}],
      ];
      for (const [i, [path, headers]] of cases.entries()) {
        const ip = `203.0.113.${40 + i}`;
        const statuses: number[] = [];
        for (let n = 0; n < 5; n++) {
          const r = await get(ferry, path, { ...headers, "X-Forwarded-For": ip });
          statuses.push(r.status);
          if (r.status === 429) expect({ path, retryAfter: Number(r.headers.get("retry-after")) > 0 }).toEqual({ path, retryAfter: true });
          await r.body?.cancel();
        }
        expect({ path, statuses }).toEqual({ path, statuses: [200, 200, 200, 200, 429] });
      }
      // The registry API keeps its own (here: unlimited) budget.
      for (let n = 0; n < 6; n++) expect((await get(ferry, "/v2/library/five/manifests/latest", { Authorization: `Bearer ${STATIC_TOKEN}`, "X-Forwarded-For": "203.0.113.40" })).status).toBe(200);
    } finally {
      await ferry.stop();
    }
  }, 60_000);
});

describe("metrics", () => {
  test("10,000 random paths under /v1, /api and elsewhere leave the label set fixed", async () => {
    // Page budgets out of the way: this test is about series, not 429s.
    const ferry = await startFerry({ config: `[limits]\nadmin_requests_per_minute = 1000000\nsearch_requests_per_minute = 1000000\n${hubRegistry(hub.url)}\n${OTHER_REGISTRIES_OFF}` });
    try {
      const seriesCount = async () => {
        const res = await get(ferry, "/metrics");
        expect(res.status).toBe(200);
        const text = await res.text();
        return text.split("\n").filter((l) => l.startsWith("ferry_http_requests_total{") || l.startsWith("ferry_http_request_duration_seconds_count{")).length;
      };
      await get(ferry, "/v2/library/five/manifests/latest");
      const before = await seriesCount();
      const prefixes = ["/v1/", "/api/", "/ui/", "/", "/assets/", "/v2/"];
      for (let i = 0; i < 10_000; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) => {
            const p = `${prefixes[(i + j) % prefixes.length]}${crypto.randomUUID()}`;
            return fetch(`${ferry.url}${p}`, { signal: AbortSignal.timeout(20_000) }).then((r) => r.body?.cancel());
          }),
        );
      }
      const after = await seriesCount();
      console.log("request series before/after 10,000 random paths:", before, after);
      expect(before).toBeGreaterThan(0);
      expect(after).toBeGreaterThan(before); // the random paths were counted, as "other"
      expect(after).toBeLessThan(before + 30);
    } finally {
      await ferry.stop();
    }
  }, 180_000);
});

describe("IPv6 clients", () => {
  test("limits aggregate a /64 by default; ipv6_prefix sets the width", async () => {
    const ferry = await startFerry({ config: `[limits]\nrequests_per_minute = 3\n${TRUST}\n${hubRegistry(hub.url)}` });
    try {
      const as = (ip: string) => get(ferry, "/v2/library/five/manifests/latest", { "X-Forwarded-For": ip }).then((r) => r.status);
      expect([await as("2001:db8:1:2::1"), await as("2001:db8:1:2::2"), await as("2001:db8:1:2:ffff:1:2:3"), await as("2001:db8:1:2::4")]).toEqual([200, 200, 200, 429]);
      expect(await as("2001:db8:1:3::1")).toBe(200);
    } finally {
      await ferry.stop();
    }
    const wide = await startFerry({ config: `[limits]\nrequests_per_minute = 2\nipv6_prefix = 48\n${TRUST}\n${hubRegistry(hub.url)}` });
    try {
      const as = (ip: string) => get(wide, "/v2/library/five/manifests/latest", { "X-Forwarded-For": ip }).then((r) => r.status);
      expect([await as("2001:db8:7:1::1"), await as("2001:db8:7:2::1"), await as("2001:db8:7:3::1")]).toEqual([200, 200, 429]);
      expect(await as("2001:db8:8:1::1")).toBe(200);
    } finally {
      await wide.stop();
    }
  }, 60_000);
});

describe("byte budgets", () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3({ bucket: "doors" });
  }, 60_000);
  afterAll(async () => {
    await s3?.dispose();
  });

  test("a 307 to S3 is charged the blob's size", async () => {
    const blob = image.blobs.reduce((a, b) => (a.size > b.size ? a : b));
    const cacheDir = join(scratch, "redirect-cache");
    const s3Config = `[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\nregion = "us-east-1"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\nforce_path_style = true\nredirect = true`;
    const ferry = await startFerry({ cacheDir, config: `${s3Config}\n[limits]\nbytes = "${blob.size}/1h"\n${TRUST}\n${hubRegistry(hub.url)}` });
    try {
      const path = `/v2/library/five/blobs/${blob.digest}`;
      const warm = await get(ferry, path, { "X-Forwarded-For": "192.0.2.50" });
      expect(warm.status).toBe(200);
      await warm.arrayBuffer();
      // Only S3 holds it now (once its upload completed), so ferry answers with a redirect.
      await waitFor(async () => (await s3.listKeys()).some((k) => k.endsWith(blob.digest.slice(7))), { what: "the blob in S3" });
      rmSync(join(cacheDir, "blobs"), { recursive: true, force: true });
      const first = await fetch(`${ferry.url}${path}`, { headers: { "X-Forwarded-For": "192.0.2.51" }, redirect: "manual" });
      expect(first.status).toBe(307);
      expect(first.headers.get("location")).toStartWith(s3.endpoint);
      const second = await fetch(`${ferry.url}${path}`, { headers: { "X-Forwarded-For": "192.0.2.51" }, redirect: "manual" });
      expect(second.status).toBe(429);
      expect(await errorCode(second)).toBe("TOOMANYREQUESTS");
    } finally {
      await ferry.stop();
    }
  }, 120_000);
});

describe("ferry's own tokens, attacked", () => {
  test("alg none, expired, wrong scope, other repository, another secret, truncated, garbage: all 401 + challenge", async () => {
    await hub.push(image, "library/other:latest");
    const ferry = await startFerry({ config: `${auth()}\n${hubRegistry(hub.url)}` });
    try {
      const issued = await get(ferry, "/token?service=ferry&scope=repository:library/five:pull", { Authorization: basic("alice", "wonderland") });
      const { token } = (await issued.json()) as { token: string };
      expect((await get(ferry, "/v2/library/five/manifests/latest", { Authorization: `Bearer ${token}` })).status).toBe(200);
      const now = Math.floor(Date.now() / 1000);
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
      const [, body] = token.split(".") as [string, string, string];
      const claims = { sub: "alice", access: ["library/five"], iat: now, exp: now + 300 };
      const same = new TokenSigner(SECRET);
      const attacks: Record<string, string> = {
        "alg none": `${b64({ alg: "none", typ: "JWT" })}.${body}.`,
        "alg none, no signature part": `${b64({ alg: "none", typ: "JWT" })}.${body}`,
        expired: same.sign({ ...claims, iat: now - 600, exp: now - 1 }),
        "other secret": new TokenSigner("x".repeat(40)).sign(claims),
        truncated: token.slice(0, Math.floor(token.length / 2)),
        "signature dropped": token.slice(0, token.lastIndexOf(".") + 1),
        "body swapped": `${token.split(".")[0]}.${b64({ ...claims, access: ["library/other"] })}.${token.split(".")[2]}`,
        garbage: "!!!!.????.####",
        "claims of the wrong types": same.sign({ sub: 7, access: "library/five", iat: "x", exp: now + 300 } as never),
        empty: "",
      };
      for (const [what, forged] of Object.entries(attacks)) {
        await expectChallenge(await get(ferry, "/v2/library/five/manifests/latest", { Authorization: `Bearer ${forged}` }), what);
      }
      // A valid token is refused outside its scope: another repository, and one it never named.
      await expectChallenge(await get(ferry, "/v2/library/other/manifests/latest", { Authorization: `Bearer ${token}` }), "other repository");
      const catalogScope = await get(ferry, "/token?service=ferry&scope=registry:catalog:*", { Authorization: basic("alice", "wonderland") });
      const { token: noRepos } = (await catalogScope.json()) as { token: string };
      await expectChallenge(await get(ferry, "/v2/library/five/manifests/latest", { Authorization: `Bearer ${noRepos}` }), "wrong scope");
      await expectChallenge(await get(ferry, `/v2/library/five/blobs/${image.blobs[0]!.digest}`, { Authorization: `Bearer ${noRepos}` }), "wrong scope, blob");
    } finally {
      await ferry.stop();
    }
  }, 60_000);
});

describe("header mutation fuzz", () => {
  test("Accept, Authorization, Range, X-Forwarded-For and Host mutated: no 5xx, OCI errors well-formed", async () => {
    const seed = runSeed();
    console.log(`header fuzz seed: ${seed} (FERRY_SEED=${seed} replays it)`);
    let x = seed || 1;
    const rng = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 4294967296);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    const ferry = await startFerry({ config: `${auth(`anonymous = true`)}\n[limits]\n${TRUST}\nrequests_per_minute = 100000\n${hubRegistry(hub.url)}\n${OTHER_REGISTRIES_OFF}` });
    try {
      const issued = await get(ferry, "/token?service=ferry&scope=repository:library/five:pull", { Authorization: basic("alice", "wonderland") });
      const { token } = (await issued.json()) as { token: string };
      const blob = image.blobs[0]!;
      const paths = ["/v2/", "/v2/library/five/manifests/latest", `/v2/library/five/manifests/${image.manifestDigest}`, `/v2/library/five/blobs/${blob.digest}`, "/v2/library/five/tags/list", "/v2/_catalog", "/token?service=ferry&scope=repository:library/five:pull"];
      const mutate = (s: string) => {
        const i = Math.floor(rng() * (s.length + 1));
        return pick([() => s.slice(0, i), () => s + s, () => s.slice(0, i) + pick(["\t", "%00", ",", ";", "=", '"', "\\", "é", "*", " "]) + s.slice(i), () => s.toUpperCase(), () => "", () => s.repeat(40)])();
      };
      const values: Record<string, string[]> = {
        Accept: [ACCEPT, "application/vnd.oci.image.index.v1+json", "*/*", "application/json;q=0", "text/html", ";;;", "application/vnd.docker.distribution.manifest.v2+json;q=abc"],
        Authorization: [`Bearer ${token}`, `Bearer ${STATIC_TOKEN}`, basic("alice", "wonderland"), basic("alice", "x"), "Basic", "Bearer", "Basic Og==", "Digest x=y", `Bearer ${token}.extra`, `basic ${btoa("alice")}`],
        Range: ["bytes=0-10", "bytes=-5", "bytes=5-", "bytes=10-1", "bytes=0-0,1-1", "bytes=99999999999-", "items=1-2", "bytes=-", "bytes=0-18446744073709551616"],
        "X-Forwarded-For": ["203.0.113.1", "2001:db8::1", "::ffff:127.0.0.1", "[2001:db8::2]:443", "unknown", "1.2.3.4, 5.6.7.8", "999.1.1.1", "fe80::1%eth0", ", , ,"],
        Host: ["127.0.0.1", "ghcr.io", "evil.example:1", "[::1]:80", "docker.io", "a..b", "x:y:z"],
      };
      const fives: string[] = [];
      const badShapes: string[] = [];
      const statuses = new Map<number, number>();
      const N = 600;
      for (let i = 0; i < N; i += 20) {
        const batch = Array.from({ length: 20 }, () => {
          const headers: [string, string][] = [];
          for (const [name, list] of Object.entries(values)) if (rng() < 0.6) headers.push([name, rng() < 0.4 ? mutate(pick(list)) : pick(list)]);
          if (!headers.some(([n]) => n === "Host")) headers.push(["Host", "127.0.0.1"]);
          const path = pick(paths);
          const method = rng() < 0.8 ? "GET" : "HEAD";
          const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, "")}\r\n`).join("")}Connection: close\r\n\r\n`;
          return { head, path, method };
        });
        const answers = await Promise.all(batch.map((b) => rawRequest(ferry.port, b.head)));
        answers.forEach((a, j) => {
          const { head, path, method } = batch[j]!;
          statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
          if (a.status >= 500) fives.push(`${a.status} ${head.replace(/\r\n/g, " | ").slice(0, 300)}`);
          if (a.status >= 400 && method === "GET" && path.startsWith("/v2/")) {
            const body = a.text.slice(a.text.indexOf("\r\n\r\n") + 4);
            let ok = false;
            try {
              const parsed = JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] };
              ok = Array.isArray(parsed.errors) && parsed.errors.length > 0 && parsed.errors.every((e) => typeof e.code === "string" && /^[A-Z_]+$/.test(e.code) && typeof e.message === "string");
            } catch {}
            if (!ok) badShapes.push(`${a.status} ${head.replace(/\r\n/g, " | ").slice(0, 200)} => ${body.slice(0, 120)}`);
          }
        });
      }
      console.log("header fuzz statuses:", JSON.stringify(Object.fromEntries(statuses)));
      if (statuses.get(0)) console.log("ferry log tail:", ferry.logs().slice(-3000));
      expect(fives).toEqual([]);
      expect(badShapes).toEqual([]);
      expect([...statuses.keys()].some((s) => s === 200 || s === 206)).toBe(true);
      // No mutated request spoiled the cache for the next client.
      const after = await get(ferry, "/v2/library/five/manifests/latest", { Authorization: `Bearer ${token}` });
      expect({ status: after.status, body: after.status === 200 ? "" : await after.text() }).toEqual({ status: 200, body: "" });
    } finally {
      await ferry.stop();
    }
  }, 180_000);
});
