// A request's own deadline (its AbortSignal) in the upstream tier code: a request queued
// for one of an endpoint's max_concurrent places, or waiting on a token fetch another
// request started, stops waiting when its signal aborts, without taking anything from the
// requests still waiting. Tiny in-process registries and a node:http token service (its
// socket shows whether the shared fetch was aborted); e2e tests use distribution itself.
import { afterEach, expect, test } from "bun:test";
import http from "node:http";
import { createLogger } from "../../src/observe/logger.ts";
import { TokenCache } from "../../src/upstream/auth.ts";
import { Endpoint } from "../../src/upstream/endpoint.ts";
import { EndpointHealth } from "../../src/upstream/health.ts";
import { Upstream } from "../../src/upstream/upstream.ts";
import { UpstreamError } from "../../src/upstream/errors.ts";
import { toRegistryError } from "../../src/registry/upstream-errors.ts";
import { waitFor } from "../harness/proc.ts";
import { endpointConfig, errorJson, registryConfig, startTinyRegistry, TEST_POLICY, type TinyRegistry } from "./support/tiny-registry.ts";

const running: TinyRegistry[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) r.stop();
  for (const close of closers.splice(0)) await close();
});

function registry(): TinyRegistry {
  const r = startTinyRegistry();
  running.push(r);
  return r;
}

/** Far beyond every bound below: a wait that ends only at the endpoint timeout shows as "pending". */
const ENDPOINT_TIMEOUT_MS = 30_000;
/** How long a wait that should end on an event may take to be seen ending (a bound, not a decision). */
const PROMPTLY_MS = 3_000;

type Outcome<T> = { state: "fulfilled"; value: T } | { state: "rejected"; error: Error } | { state: "pending" };

/** How `p` settles, or "pending" if it has not within `ms`. */
async function settledWithin<T>(p: Promise<T>, ms = PROMPTLY_MS): Promise<Outcome<T>> {
  let timer: Timer | undefined;
  const bound = new Promise<Outcome<T>>((resolve) => (timer = setTimeout(() => resolve({ state: "pending" }), ms)));
  try {
    return await Promise.race([p.then((value) => ({ state: "fulfilled" as const, value }), (error: Error) => ({ state: "rejected" as const, error })), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** A registry whose manifest GETs for `held` wait until released; everything else is a 404 at once. */
function holdingRegistry(held: string) {
  const up = registry();
  const releases: (() => void)[] = [];
  up.fault = (_req, url) =>
    url.pathname.includes(held) ? new Promise<Response>((resolve) => releases.push(() => resolve(errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown")))) : errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown");
  return { up, releaseAll: () => releases.splice(0).forEach((r) => r()) };
}

const get = (repository: string, signal?: AbortSignal) => ({ method: "GET" as const, path: `/v2/${repository}/manifests/1`, repository, signal });

test("max_concurrent: a queued request whose signal aborts leaves the queue at once; the others keep their order and no place is lost", async () => {
  const { up, releaseAll } = holdingRegistry("/held/");
  const endpoint = new Endpoint(endpointConfig(up.url, { maxConcurrent: 1, timeoutMs: ENDPOINT_TIMEOUT_MS }), new TokenCache(), new EndpointHealth(TEST_POLICY));
  const holder = endpoint.request(get("held"));
  await waitFor(() => up.count({ pathIncludes: "/held/" }) === 1, { what: "the first request to hold the only place" });
  const first = endpoint.request(get("first", new AbortController().signal));
  const leaving = new AbortController();
  const gone = endpoint.request(get("gone", leaving.signal));
  const last = endpoint.request(get("last"));
  leaving.abort();
  const left = await settledWithin(gone);
  expect(left.state).toBe("rejected");
  if (left.state === "rejected") expect(left.error.name).toBe("AbortError");
  releaseAll();
  expect((await holder).status).toBe(404);
  expect((await first).status).toBe(404);
  expect((await last).status).toBe(404);
  // The request that left never reached the upstream; the others went one at a time, in order.
  expect(up.log.map((l) => l.path)).toEqual(["/v2/held/manifests/1", "/v2/first/manifests/1", "/v2/last/manifests/1"]);
  // Its place was not lost: with max_concurrent 1, a leak would leave the next request queued.
  const after = await settledWithin(endpoint.request(get("after")));
  expect(after.state).toBe("fulfilled");
});

test("max_concurrent: a client gone while queued ends its request at once, asks no further tier and blames no tier", async () => {
  const { up: primary, releaseAll } = holdingRegistry("/held/");
  const secondary = registry();
  const upstream = new Upstream(registryConfig([endpointConfig(primary.url, { maxConcurrent: 1, timeoutMs: ENDPOINT_TIMEOUT_MS }), secondary.url]), new TokenCache(), createLogger("silent"));
  const holder = upstream.request(get("held"));
  await waitFor(() => primary.count({ pathIncludes: "/held/" }) === 1, { what: "the first request to hold the only place" });
  const client = new AbortController();
  const queued = upstream.request(get("queued", client.signal));
  client.abort();
  const outcome = await settledWithin(queued);
  expect(outcome.state).toBe("rejected");
  if (outcome.state === "rejected") expect(outcome.error.name).toBe("AbortError");
  expect(secondary.log).toEqual([]);
  expect(upstream.endpoints[0]!.health.snapshot().consecutiveFailures).toBe(0);
  releaseAll();
  expect((await holder).response.status).toBe(404);
});

/** A token service whose answers wait until released; it records each request and whether its client hung up first. */
async function holdingTokenService() {
  const seen: { scope: string | null; hungUp: boolean; answered: boolean }[] = [];
  const releases: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    const entry = { scope: new URL(req.url ?? "/", "http://x").searchParams.get("scope"), hungUp: false, answered: false };
    seen.push(entry);
    res.on("close", () => {
      if (!res.writableFinished) entry.hungUp = true;
    });
    const answer = () => {
      entry.answered = true;
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ token: `token-for-${entry.scope}`, expires_in: 300 }));
    };
    if (entry.scope?.includes("warm")) answer();
    else releases.push(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  const port = (server.address() as { port: number }).port;
  return { realm: `http://127.0.0.1:${port}/token`, seen, releaseAll: () => releases.splice(0).forEach((r) => r()) };
}

/** A registry that wants a bearer token from `realm` for every manifest and 404s once it has one. */
function tokenRegistry(realm: string): TinyRegistry {
  const up = registry();
  up.fault = (req, url) => {
    const repository = /^\/v2\/(.+)\/manifests\//.exec(url.pathname)?.[1] ?? "";
    if (req.headers.get("authorization") === `Bearer token-for-repository:${repository}:pull`) return errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown");
    return errorJson(401, "UNAUTHORIZED", "authentication required", { "WWW-Authenticate": `Bearer realm="${realm}",service="tiny",scope="repository:${repository}:pull"` });
  };
  return up;
}

/** An endpoint that already knows the registry's challenge (from a request for another repository). */
async function warmEndpoint(url: string): Promise<Endpoint> {
  const endpoint = new Endpoint(endpointConfig(url, { timeoutMs: ENDPOINT_TIMEOUT_MS }), new TokenCache(), new EndpointHealth(TEST_POLICY));
  expect((await endpoint.request(get("warm"))).status).toBe(404);
  return endpoint;
}

test("shared token fetch: the first caller leaving stops its own wait only; the fetch goes on for the callers still waiting", async () => {
  const tokens = await holdingTokenService();
  const up = tokenRegistry(tokens.realm);
  const endpoint = await warmEndpoint(up.url);
  const firstCaller = new AbortController();
  const first = endpoint.request(get("app", firstCaller.signal));
  const second = endpoint.request(get("app", new AbortController().signal));
  await waitFor(() => tokens.seen.some((s) => s.scope === "repository:app:pull"), { what: "the token request for app" });
  firstCaller.abort();
  const left = await settledWithin(first);
  expect(left.state).toBe("rejected");
  if (left.state === "rejected") expect(left.error.name).toBe("AbortError");
  tokens.releaseAll();
  const stayed = await settledWithin(second);
  expect(stayed.state).toBe("fulfilled");
  if (stayed.state === "fulfilled") expect(stayed.value.status).toBe(404); // the registry's answer with the token
  // One token request for both callers, answered, not abandoned.
  expect(tokens.seen.filter((s) => s.scope === "repository:app:pull")).toEqual([{ scope: "repository:app:pull", hungUp: false, answered: true }]);
});

test("shared token fetch: once every caller has left, the fetch is aborted; a later caller starts a new one", async () => {
  const tokens = await holdingTokenService();
  const up = tokenRegistry(tokens.realm);
  const endpoint = await warmEndpoint(up.url);
  const callers = [new AbortController(), new AbortController()];
  const requests = callers.map((c) => endpoint.request(get("app", c.signal)));
  await waitFor(() => tokens.seen.some((s) => s.scope === "repository:app:pull"), { what: "the token request for app" });
  callers[0]!.abort();
  expect((await settledWithin(requests[0]!)).state).toBe("rejected");
  expect(tokens.seen[1]!.hungUp).toBe(false); // one caller is still waiting
  callers[1]!.abort();
  expect((await settledWithin(requests[1]!)).state).toBe("rejected");
  await waitFor(() => tokens.seen[1]!.hungUp, { timeoutMs: PROMPTLY_MS, what: "the abandoned token request to be hung up" });
  const later = endpoint.request(get("app"));
  await waitFor(() => tokens.seen.length === 3, { timeoutMs: PROMPTLY_MS, what: "a new token request for the later caller" });
  tokens.releaseAll();
  expect((await later).status).toBe(404);
});

test("max_concurrent: time spent waiting for a place is not the tier's: a request queued behind a slow answer is answered by that tier, which is not marked failed", async () => {
  // The tier answers every request in 1.2 s, within its 2 s timeout; a request queued behind
  // another waits 1.2 s for the place, then 1.2 s for its own answer.
  const primary = registry();
  primary.fault = (_req, url) => (url.pathname.includes("/slow/") ? Bun.sleep(1_200).then(() => errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown")) : errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown"));
  const secondary = registry();
  const upstream = new Upstream(registryConfig([endpointConfig(primary.url, { maxConcurrent: 1, timeoutMs: 2_000 }), secondary.url]), new TokenCache(), createLogger("silent"));
  const first = upstream.request(get("slow/a"));
  await waitFor(() => primary.count({ pathIncludes: "/slow/" }) === 1, { what: "the first request to hold the only place" });
  const queued = upstream.request(get("slow/b"));
  const [a, b] = await Promise.all([first, queued]);
  expect([a.endpoint.url, b.endpoint.url]).toEqual([primary.url, primary.url]);
  expect([a.response.status, b.response.status]).toEqual([404, 404]);
  expect(secondary.log).toEqual([]);
  expect(upstream.endpoints[0]!.health.snapshot().consecutiveFailures).toBe(0);
});

test("max_concurrent: a place that stays taken for the endpoint's timeout is a 'queued' timeout, answered as ferry's own limit (503), never as the upstream timing out", async () => {
  // Each answer takes 0.6 s, within the 1 s timeout; the third request in line waits 1.2 s for a place.
  const up = registry();
  up.fault = () => Bun.sleep(600).then(() => errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown"));
  const endpoint = new Endpoint(endpointConfig(up.url, { maxConcurrent: 1, timeoutMs: 1_000 }), new TokenCache(), new EndpointHealth(TEST_POLICY));
  const first = endpoint.request(get("first"));
  await waitFor(() => up.count({ pathIncludes: "/first/" }) === 1, { what: "the first request to hold the only place" });
  const second = endpoint.request(get("second"));
  const third = await settledWithin(endpoint.request(get("third")));
  expect(third.state).toBe("rejected");
  const error = (third as { error: Error }).error;
  expect(error).toBeInstanceOf(UpstreamError);
  expect((error as UpstreamError).failure).toEqual({ kind: "timeout", phase: "queued" });
  const answer = toRegistryError(error, "MANIFEST_UNKNOWN", "manifest third:1");
  expect({ status: answer.status, code: answer.code }).toEqual({ status: 503, code: "UNAVAILABLE" });
  expect(answer.message).toContain("max_concurrent");
  expect([(await first).status, (await second).status]).toEqual([404, 404]);
  expect(up.count({ pathIncludes: "/third/" })).toBe(0);
});

test("max_concurrent: a request that finds no place in time is asked of the next tier, and the full tier is not marked failed", async () => {
  const primary = registry();
  primary.fault = () => Bun.sleep(600).then(() => errorJson(404, "MANIFEST_UNKNOWN", "manifest unknown"));
  const secondary = registry();
  const upstream = new Upstream(registryConfig([endpointConfig(primary.url, { maxConcurrent: 1, timeoutMs: 1_000 }), secondary.url]), new TokenCache(), createLogger("silent"));
  const first = upstream.request(get("first"));
  await waitFor(() => primary.count({ pathIncludes: "/first/" }) === 1, { what: "the first request to hold the only place" });
  const second = upstream.request(get("second"));
  const third = await upstream.request(get("third"));
  expect(third.endpoint.url).toBe(secondary.url);
  expect([(await first).endpoint.url, (await second).endpoint.url]).toEqual([primary.url, primary.url]);
  expect(primary.count({ pathIncludes: "/third/" })).toBe(0);
  expect(upstream.endpoints[0]!.health.snapshot().consecutiveFailures).toBe(0);
});
