// A local stand-in for Docker Hub, for end-to-end tests of ferry.
//
//   front  (Bun.serve)  like registry-1.docker.io: proxies to distribution,
//                        but answers blob GETs with a 307 to the CDN
//   token  (Bun.serve)  like auth.docker.io: issues JWTs for distribution's
//                        token auth (anonymous pull, `pusher` may push, private/*)
//   cdn    (node:http)  like Docker Hub's presigned blob URLs: serves blob bytes
//                        from the registry's storage dir, refuses Authorization
//   registry            Debian's docker-registry (distribution 2.8), a child
//                        process with filesystem storage in a temp dir
//
// All listen on random 127.0.0.1 ports. Every request seen by front, token and
// CDN is recorded in an access log, and faults (error statuses, hangs, resets,
// corrupted bytes, full outage) can be switched on at runtime.
//
// Why the CDN uses node:http rather than Bun.serve: a "reset" fault must send
// the headers with the full Content-Length, some bytes, then drop the socket.
// Bun.serve sends streaming bodies chunked and has no socket handle; node:http
// gives both.

import { createHmac, randomBytes, sign as cryptoSign, timingSafeEqual, randomUUID } from "node:crypto";
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, readSync, closeSync } from "node:fs";
import http from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { ALL_MANIFEST_TYPES, type BuiltImage } from "./images.ts";
import { LOOPBACK, freePort, onExit, run, spawnDaemon, waitFor, type Daemon } from "./proc.ts";

// Public types ------------------------------------------------------------------

export type ServerName = "front" | "token" | "cdn";

export interface LogEntry {
  server: ServerName;
  method: string;
  /** URL path, e.g. /v2/library/alpine/manifests/latest */
  path: string;
  /** Raw query string without "?" ("" if none). */
  query: string;
  /** Response status; 0 while unanswered (e.g. a "hang" fault). */
  status: number;
  /** Body bytes the server meant to send (Content-Length; bytes actually written for reset/stall). */
  bytes: number;
  headers: { authorization: boolean; range?: string; accept?: string; userAgent?: string };
  /** Date.now() when the request arrived. */
  time: number;
}

export interface LogFilter {
  server?: ServerName;
  method?: string;
  pathIncludes?: string;
  pathRegex?: RegExp;
  status?: number | number[];
}

interface FaultCommon {
  /** Only requests whose path matches (default: all). */
  match?: RegExp;
  /** Stop after this many requests were faulted (default: until cleared). */
  times?: number;
}

export type Fault =
  /** Answer `status` with an OCI error JSON (front/token) or S3-like XML (cdn) body. Default servers: front+cdn. */
  | (FaultCommon & { kind: "status"; status: number; retryAfter?: number; body?: string; server?: ServerName | ServerName[] })
  /** Accept the request and never answer (until the fault is cleared/replaced: front/token then answer 503, the CDN drops the connection). Default servers: front+cdn. */
  | (FaultCommon & { kind: "hang"; server?: ServerName | ServerName[] })
  /** CDN: headers with the full Content-Length, `afterBytes` body bytes, then the socket is destroyed. */
  | (FaultCommon & { kind: "reset"; afterBytes: number })
  /** CDN: headers + `afterBytes` body bytes, then nothing more (socket stays open). */
  | (FaultCommon & { kind: "stall"; afterBytes: number })
  /** CDN: right status and length, but some body bytes are flipped. */
  | (FaultCommon & { kind: "corrupt" })
  /** Front and CDN stop listening (connection refused) until the fault is cleared. */
  | { kind: "down" };

export interface UpstreamOptions {
  /** Lifetime of issued tokens (default 300). */
  tokenTtlSeconds?: number;
  /** Lifetime of CDN redirect URLs (default 600). */
  cdnUrlTtlSeconds?: number;
  /**
   * Host name put in CDN redirect URLs (default 127.0.0.1, i.e. same host as
   * the front, another port). Go's client (skopeo 1.9) and Bun's fetch drop
   * Authorization on a redirect to another port; a client that keeps it gets a
   * 400 from the CDN. Use e.g. "localhost" to make the CDN a different host name.
   */
  cdnHost?: string;
  /** Keep the temp dir (data, config, logs) after stop(). Default: env FERRY_KEEP_UPSTREAM=1. */
  keepDataDir?: boolean;
  /** Accept pushes of (signed) schema1 manifests: distribution's compatibility.schema1 (off by default). */
  schema1?: boolean;
  /** Users of the token server: name -> { password, push }. Default pusher/pushpass (push), reader/readpass (pull). */
  users?: Record<string, { password: string; push: boolean }>;
}

export interface PushResult {
  ref: string;
  digest: string;
}

export interface Upstream {
  /** Front URL: what clients and ferry use as the upstream, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** "127.0.0.1:port" of the front. */
  readonly host: string;
  /** distribution itself (token auth; no redirects). */
  readonly registryUrl: string;
  readonly registryHost: string;
  /** Token endpoint, e.g. http://127.0.0.1:40000/token */
  readonly tokenUrl: string;
  readonly cdnUrl: string;
  /** distribution's filesystem storage root. */
  readonly dataDir: string;
  /** Temp dir holding data, config.yml, key/cert and registry.log. */
  readonly tmpDir: string;
  readonly registryLogFile: string;
  /** PID of the running registry process (undefined while stopped). */
  readonly registryPid: number | undefined;
  readonly service: string;
  readonly issuer: string;

  /** Live access log (cleared in place by clearLog). */
  readonly log: LogEntry[];
  count(filter?: LogFilter): number;
  entries(filter?: LogFilter): LogEntry[];
  clearLog(): void;

  /** Switch fault injection; null clears (and brings front+CDN back after "down"). */
  setFault(fault: Fault | null): Promise<void>;
  readonly fault: Fault | null;

  /** Push an image layout with skopeo (through the front by default) and check the digest. */
  push(image: BuiltImage, ref: string, opts?: { direct?: boolean }): Promise<PushResult>;
  /** Get a bearer token from the token server, as a client would. */
  token(scopes: string | string[], creds?: { username: string; password: string }): Promise<string>;
  /** Presigned CDN URL for a blob (ttlSeconds may be negative to make an expired one). */
  cdnUrlFor(digest: string, ttlSeconds?: number): string;
  /** Path of a blob's bytes in distribution's storage. */
  blobFile(digest: string): string;

  /** Stop everything (registry, token, front, CDN) but keep data and ports. */
  stopAll(): Promise<void>;
  /** Start again after stopAll(), on the same ports with the same data. */
  start(): Promise<void>;
  /** Stop everything for good and remove the temp dir. */
  stop(): Promise<void>;
}

// Helpers -----------------------------------------------------------------------

const SERVICE = "registry.test";
const ISSUER = "ferry-test-issuer";
const BLOB_GET_RE = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/;
const CDN_PATH_RE = /^\/blobs\/(sha256):([a-f0-9]{64})$/;

// Hop-by-hop headers are per connection and must not be forwarded by a proxy.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

const b64url = (data: Uint8Array | string) => Buffer.from(data).toString("base64url");

function ociErrorBody(status: number, body?: string): string {
  if (body !== undefined) return body;
  const code =
    status === 429 ? "TOOMANYREQUESTS" : status === 503 ? "UNAVAILABLE" : status === 401 ? "UNAUTHORIZED" : status === 404 ? "NOT_FOUND" : "UNKNOWN";
  const message =
    status === 429
      ? "You have reached your pull rate limit. (ferry test fault)"
      : `injected fault: HTTP ${status}`;
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}

function s3ErrorXml(code: string, message: string, extra = ""): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
    `${extra}<RequestId>${randomBytes(8).toString("hex").toUpperCase()}</RequestId></Error>`
  );
}

function s3CodeFor(status: number): string {
  return status === 503 ? "SlowDown" : status === 500 ? "InternalError" : status === 403 ? "AccessDenied" : `Status${status}`;
}

function matchesFilter(e: LogEntry, f: LogFilter): boolean {
  if (f.server && e.server !== f.server) return false;
  if (f.method && e.method !== f.method.toUpperCase()) return false;
  if (f.pathIncludes && !e.path.includes(f.pathIncludes)) return false;
  if (f.pathRegex && !f.pathRegex.test(e.path)) return false;
  if (f.status !== undefined) {
    const want = Array.isArray(f.status) ? f.status : [f.status];
    if (!want.includes(e.status)) return false;
  }
  return true;
}

/** Parse a single-range "bytes=a-b" header against a size; null = unsatisfiable, undefined = no/ignored range. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // multi-range or junk: serve the whole thing, like S3
  const [, a = "", b = ""] = m;
  let start: number;
  let end: number;
  if (a === "" && b === "") return undefined;
  if (a === "") {
    const n = Number(b);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return null;
  return { start, end };
}

// Implementation -------------------------------------------------------------------

/** Start a Docker-Hub-like upstream (registry + token server + front + CDN). */
export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const tokenTtl = opts.tokenTtlSeconds ?? 300;
  const cdnTtl = opts.cdnUrlTtlSeconds ?? 600;
  const cdnHostName = opts.cdnHost ?? LOOPBACK;
  const keepDir = opts.keepDataDir ?? process.env.FERRY_KEEP_UPSTREAM === "1";
  const users = opts.users ?? {
    pusher: { password: "pushpass", push: true },
    reader: { password: "readpass", push: false },
  };

  const tmpDir = mkdtempSync(join(tmpdir(), "ferry-upstream-"));
  const dataDir = join(tmpDir, "data");
  const keyFile = join(tmpDir, "token-key.pem");
  const certFile = join(tmpDir, "token-cert.pem");
  const configFile = join(tmpDir, "config.yml");
  const registryLogFile = join(tmpDir, "registry.log");
  const unregisterRm = keepDir ? () => {} : onExit(() => rmSync(tmpDir, { recursive: true, force: true }));

  // Token signing key: a self-signed EC cert serves as both leaf (x5c) and root
  // (rootcertbundle); distribution 2.8 verifies the x5c chain against the bundle.
  await run([
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "30", "-subj", "/CN=ferry-test-token-signer",
  ]);
  const keyPem = readFileSync(keyFile, "utf8");
  const certDerB64 = readFileSync(certFile, "utf8")
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, "")
    .replace(/\s+/g, "");
  const cdnSecret = randomBytes(32);

  const log: LogEntry[] = [];
  let fault: Fault | null = null;
  let faultUses = 0;

  // Ports: Bun/node pick theirs at first start (port 0) and keep them for restarts.
  let frontPort = 0;
  let tokenPort = 0;
  let cdnPort = 0;
  const registryPort = await freePort();
  const registryUrl = `http://${LOOPBACK}:${registryPort}`;

  let front: Server<undefined> | undefined;
  let tokenSrv: Server<undefined> | undefined;
  let cdn: http.Server | undefined;
  const cdnSockets = new Set<Socket>();
  let registry: Daemon | undefined;
  // Requests held by "hang" faults: released when the fault is cleared or
  // replaced, and on stop (front/token answer 503, CDN drops the connection).
  const hung = new Set<() => void>();

  const frontUrl = () => `http://${LOOPBACK}:${frontPort}`;
  const tokenUrl = () => `http://${LOOPBACK}:${tokenPort}/token`;
  const cdnUrl = () => `http://${cdnHostName}:${cdnPort}`;

  // --- access log and faults -------------------------------------------------

  function logStart(server: ServerName, method: string, url: URL, get: (h: string) => string | null | undefined): LogEntry {
    const e: LogEntry = {
      server,
      method,
      path: url.pathname,
      query: url.search.replace(/^\?/, ""),
      status: 0,
      bytes: 0,
      headers: { authorization: !!get("authorization") },
      time: Date.now(),
    };
    const range = get("range");
    const accept = get("accept");
    const ua = get("user-agent");
    if (range) e.headers.range = range;
    if (accept) e.headers.accept = accept;
    if (ua) e.headers.userAgent = ua;
    log.push(e);
    return e;
  }

  /** The active fault if it applies to this server and path (and consumes one use). */
  function faultFor(server: ServerName, path: string): Exclude<Fault, { kind: "down" }> | undefined {
    const f = fault;
    if (!f || f.kind === "down") return undefined;
    let servers: ServerName[];
    if (f.kind === "status" || f.kind === "hang") {
      servers = f.server === undefined ? ["front", "cdn"] : Array.isArray(f.server) ? f.server : [f.server];
    } else {
      servers = ["cdn"];
    }
    if (!servers.includes(server)) return undefined;
    if (f.match && !f.match.test(path)) return undefined;
    if (f.times !== undefined) {
      if (faultUses >= f.times) return undefined;
    }
    faultUses++;
    return f;
  }

  // Responses used to release hung front/token requests; the log keeps status 0 for them.
  const releasedResponses = new WeakSet<Response>();

  function hangForever(): Promise<Response> {
    return new Promise<Response>((resolve) => {
      hung.add(() => {
        const res = new Response("released hung request\n", { status: 503 });
        releasedResponses.add(res);
        resolve(res);
      });
    });
  }

  function releaseHung(): void {
    for (const r of hung) r();
    hung.clear();
  }

  // --- token server -----------------------------------------------------------

  function signJwt(sub: string, access: { type: string; name: string; actions: string[] }[]): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", x5c: [certDerB64] };
    const claims = {
      iss: ISSUER,
      sub,
      aud: SERVICE,
      exp: now + tokenTtl,
      nbf: now - 5,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JWS ES256 wants the raw r||s signature, not DER.
    const sig = cryptoSign("sha256", Buffer.from(input), { key: keyPem, dsaEncoding: "ieee-p1363" });
    return `${input}.${b64url(sig)}`;
  }

  function grant(user: string | null, scope: string): { type: string; name: string; actions: string[] } | undefined {
    // repository:NAME:ACTIONS — NAME has no ':' for our purposes, ACTIONS is comma separated.
    const first = scope.indexOf(":");
    const last = scope.lastIndexOf(":");
    if (first < 0 || last === first) return undefined;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const wanted = scope.slice(last + 1).split(",").filter(Boolean);
    if (type !== "repository") return { type, name, actions: [] };
    const allowed: string[] = [];
    if (user) {
      allowed.push("pull");
      if (users[user]?.push) allowed.push("push");
    } else if (!name.startsWith("private/")) {
      allowed.push("pull");
    }
    const actions = wanted.includes("*") ? allowed : wanted.filter((a) => allowed.includes(a));
    return { type, name, actions };
  }

  const refreshTokens = new Map<string, string>();

  async function tokenFetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const entry = logStart("token", req.method, url, (h) => req.headers.get(h));
    const res = await tokenHandle(req, url);
    if (releasedResponses.has(res)) return res;
    entry.status = res.status;
    entry.bytes = Number(res.headers.get("content-length") ?? 0);
    return res;
  }

  async function tokenHandle(req: Request, url: URL): Promise<Response> {
    const f = faultFor("token", url.pathname);
    if (f?.kind === "hang") return hangForever();
    if (f?.kind === "status") return faultResponse(f);
    if (url.pathname !== "/token") return new Response("not found\n", { status: 404 });

    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      return new Response(text, {
        status,
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers },
      });
    };
    const denied = () => json(401, { details: "incorrect username or password" }, { "www-authenticate": 'Basic realm="ferry-test"' });

    let user: string | null = null;
    let scopes: string[] = [];
    let wantRefresh = false;
    const checkUser = (name: string, password: string) => users[name]?.password === password;

    if (req.method === "GET") {
      scopes = url.searchParams.getAll("scope").flatMap((s) => s.split(" ")).filter(Boolean);
      wantRefresh = url.searchParams.get("offline_token") === "true";
      const auth = req.headers.get("authorization");
      if (auth) {
        const m = /^Basic\s+(.+)$/i.exec(auth);
        if (!m?.[1]) return denied();
        const decoded = Buffer.from(m[1], "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        const name = decoded.slice(0, colon);
        if (colon < 0 || !checkUser(name, decoded.slice(colon + 1))) return denied();
        user = name;
      }
    } else if (req.method === "POST") {
      // OAuth2 form (containerd uses it when it has credentials).
      const form = new URLSearchParams(await req.text());
      scopes = (form.get("scope") ?? "").split(" ").filter(Boolean);
      const grantType = form.get("grant_type");
      if (grantType === "password") {
        const name = form.get("username") ?? "";
        if (!checkUser(name, form.get("password") ?? "")) return denied();
        user = name;
        wantRefresh = form.get("access_type") === "offline";
      } else if (grantType === "refresh_token") {
        const name = refreshTokens.get(form.get("refresh_token") ?? "");
        if (!name) return denied();
        user = name;
      } else {
        return json(400, { error: "unsupported_grant_type" });
      }
    } else {
      return new Response("method not allowed\n", { status: 405 });
    }

    const access = scopes.map((s) => grant(user, s)).filter((a) => a !== undefined);
    const token = signJwt(user ?? "", access);
    const body: Record<string, unknown> = {
      token,
      access_token: token,
      expires_in: tokenTtl,
      issued_at: new Date().toISOString(),
    };
    if (wantRefresh && user) {
      const rt = randomBytes(16).toString("hex");
      refreshTokens.set(rt, user);
      body.refresh_token = rt;
    }
    return json(200, body);
  }

  // --- front ----------------------------------------------------------------

  function faultResponse(f: { status: number; retryAfter?: number; body?: string }): Response {
    const body = ociErrorBody(f.status, f.body);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(body)),
    };
    if (f.retryAfter !== undefined) headers["retry-after"] = String(f.retryAfter);
    return new Response(body, { status: f.status, headers });
  }

  function cdnSig(digest: string, exp: number): string {
    return createHmac("sha256", cdnSecret).update(`${digest}:${exp}`).digest("base64url");
  }

  function cdnUrlFor(digest: string, ttlSeconds = cdnTtl): string {
    const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
    return `${cdnUrl()}/blobs/${digest}?sig=${cdnSig(digest, exp)}&exp=${exp}`;
  }

  function forwardHeaders(req: Request): Headers {
    const h = new Headers();
    req.headers.forEach((v, k) => {
      if (!HOP_BY_HOP.has(k)) h.set(k, v);
    });
    // distribution builds absolute Location URLs from these, so upload URLs
    // point at the front and pushes through it work.
    h.set("x-forwarded-host", `${LOOPBACK}:${frontPort}`);
    h.set("x-forwarded-proto", "http");
    return h;
  }

  async function frontFetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const entry = logStart("front", req.method, url, (h) => req.headers.get(h));
    let res: Response;
    try {
      res = await frontHandle(req, url);
    } catch (e) {
      // Registry unreachable (e.g. during stopAll): answer like a broken gateway.
      res = new Response(ociErrorBody(502, JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: String(e) }] })), {
        status: 502,
        headers: { "content-type": "application/json" },
      });
    }
    if (releasedResponses.has(res)) return res;
    entry.status = res.status;
    entry.bytes = req.method === "HEAD" ? 0 : Number(res.headers.get("content-length") ?? 0);
    return res;
  }

  async function frontHandle(req: Request, url: URL): Promise<Response> {
    const f = faultFor("front", url.pathname);
    if (f?.kind === "hang") return hangForever();
    if (f?.kind === "status") return faultResponse(f);

    const target = `${registryUrl}${url.pathname}${url.search}`;
    const headers = forwardHeaders(req);

    // Docker Hub answers blob GETs with a redirect to its CDN. Only do so when
    // distribution would serve the blob to this client (auth + existence).
    const blob = BLOB_GET_RE.exec(url.pathname);
    if (req.method === "GET" && blob?.[2]) {
      const head = await fetch(target, { method: "HEAD", headers, redirect: "manual", decompress: false });
      await head.body?.cancel();
      if (head.status === 200) {
        return new Response(null, {
          status: 307,
          headers: {
            location: cdnUrlFor(blob[2]),
            "content-length": "0",
            "docker-distribution-api-version": "registry/2.0",
          },
        });
      }
      // Otherwise fall through so the client sees distribution's own error body.
    }

    // Small bodies (manifests, monolithic uploads) are buffered so they go out
    // with a Content-Length; big ones (layer uploads) are streamed.
    let body: RequestInit["body"] | undefined;
    if (req.method !== "GET" && req.method !== "HEAD" && req.body) {
      const len = Number(req.headers.get("content-length") ?? NaN);
      if (Number.isFinite(len) && len <= 4 * 1024 * 1024) {
        body = await req.arrayBuffer();
      } else {
        body = req.body;
        headers.delete("content-length");
      }
    }
    const upstreamRes = await fetch(target, {
      method: req.method,
      headers,
      body,
      redirect: "manual",
      decompress: false,
    });

    const out = new Headers();
    upstreamRes.headers.forEach((v, k) => {
      if (HOP_BY_HOP.has(k)) return;
      out.append(k, k === "location" ? v.replace(registryUrl, frontUrl()) : v);
    });
    const noBody = req.method === "HEAD" || upstreamRes.status === 204 || upstreamRes.status === 304;
    if (noBody) await upstreamRes.body?.cancel();
    return new Response(noBody ? null : upstreamRes.body, { status: upstreamRes.status, headers: out });
  }

  // --- CDN ------------------------------------------------------------------

  function blobFile(digest: string): string {
    const [alg = "sha256", hex = ""] = digest.split(":");
    return join(dataDir, "docker", "registry", "v2", "blobs", alg, hex.slice(0, 2), hex, "data");
  }

  function cdnHandle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", `http://${LOOPBACK}`);
    const entry = logStart("cdn", method, url, (h) => {
      const v = req.headers[h];
      return Array.isArray(v) ? v.join(", ") : v;
    });
    const reply = (status: number, headers: Record<string, string>, body?: string | Uint8Array) => {
      const buf = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body) : body;
      res.writeHead(status, { "content-length": String(buf?.length ?? 0), ...headers });
      res.end(method === "HEAD" ? undefined : buf);
      entry.status = status;
      entry.bytes = method === "HEAD" ? 0 : (buf?.length ?? 0);
    };
    const xml = (status: number, code: string, message: string, extra = "") =>
      reply(status, { "content-type": "application/xml" }, s3ErrorXml(code, message, extra));

    const f = faultFor("cdn", url.pathname);
    if (f?.kind === "hang") {
      // Never answer; the connection is dropped when the fault is cleared or on stop.
      hung.add(() => res.destroy());
      return;
    }
    if (f?.kind === "status") {
      const headers: Record<string, string> = { "content-type": "application/xml" };
      if (f.retryAfter !== undefined) headers["retry-after"] = String(f.retryAfter);
      return reply(f.status, headers, f.body ?? s3ErrorXml(s3CodeFor(f.status), `injected fault: HTTP ${f.status}`));
    }

    // Presigned URLs carry their auth in the query; S3 refuses a second mechanism.
    if (req.headers.authorization) {
      return xml(
        400,
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        "<ArgumentName>Authorization</ArgumentName>",
      );
    }
    if (method !== "GET" && method !== "HEAD") return xml(405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    const m = CDN_PATH_RE.exec(url.pathname);
    if (!m) return xml(404, "NoSuchKey", "The specified key does not exist.");
    const digest = `${m[1]}:${m[2]}`;
    const exp = Number(url.searchParams.get("exp") ?? NaN);
    const sig = url.searchParams.get("sig") ?? "";
    const want = Buffer.from(cdnSig(digest, exp));
    if (!Number.isFinite(exp) || sig.length !== want.length || !timingSafeEqual(Buffer.from(sig), want)) {
      return xml(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.");
    }
    if (exp < Math.floor(Date.now() / 1000)) return xml(403, "AccessDenied", "Request has expired");

    const file = blobFile(digest);
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      return xml(404, "NoSuchKey", "The specified key does not exist.");
    }

    const range = parseRange(req.headers.range, size);
    if (range === null) {
      return xml(416, "InvalidRange", "The requested range is not satisfiable", `<RangeRequested>${req.headers.range}</RangeRequested>`);
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "content-length": String(length),
      "accept-ranges": "bytes",
      etag: `"${m[2]}"`,
    };
    if (range) headers["content-range"] = `bytes ${start}-${end}/${size}`;
    const status = range ? 206 : 200;
    entry.status = status;

    if (method === "HEAD") {
      res.writeHead(status, headers);
      res.end();
      return;
    }

    const readSlice = (n: number): Buffer => {
      const buf = Buffer.alloc(n);
      const fd = openSync(file, "r");
      try {
        let off = 0;
        while (off < n) {
          const got = readSync(fd, buf, off, n - off, start + off);
          if (got <= 0) break;
          off += got;
        }
      } finally {
        closeSync(fd);
      }
      return buf;
    };

    if (f?.kind === "reset" || f?.kind === "stall") {
      const n = Math.max(0, Math.min(f.afterBytes, length - 1));
      res.writeHead(status, headers);
      entry.bytes = n;
      res.write(readSlice(n), () => {
        if (f.kind === "stall") return; // keep the socket open, send nothing more
        // Give the bytes a moment to leave, then drop the connection mid-body.
        setTimeout(() => {
          const sock = res.socket as (Socket & { resetAndDestroy?: () => void }) | null;
          if (sock?.resetAndDestroy) sock.resetAndDestroy();
          else sock?.destroy();
        }, 20);
      });
      return;
    }
    if (f?.kind === "corrupt") {
      const buf = readSlice(length);
      // Flip a few bytes spread over the body: same length, wrong digest.
      for (let i = Math.floor(length / 2); i < length; i += 4096) buf[i] = (buf[i] ?? 0) ^ 0xff;
      res.writeHead(status, headers);
      res.end(buf);
      entry.bytes = length;
      return;
    }

    res.writeHead(status, headers);
    entry.bytes = length;
    if (length === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(file, { start, end });
    stream.on("error", () => res.destroy());
    stream.pipe(res);
  }

  // --- lifecycle ----------------------------------------------------------------

  function writeConfig(): void {
    // YAML written by hand: JSON-ish flow style is valid YAML and avoids a dependency.
    const yaml = `version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(dataDir)}
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${LOOPBACK}:${registryPort}
  secret: ferry-test-http-secret
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  token:
    realm: ${JSON.stringify(tokenUrl())}
    service: ${JSON.stringify(SERVICE)}
    issuer: ${JSON.stringify(ISSUER)}
    rootcertbundle: ${JSON.stringify(certFile)}
health:
  storagedriver:
    enabled: false
validation:
  manifests:
    urls:
      # Foreign (non-distributable) layers, as Windows base images have: pushable only when allowed.
      allow: ['^https://example\\.com/']
${opts.schema1 ? "compatibility:\n  schema1:\n    enabled: true\n" : ""}`;
    writeFileSync(configFile, yaml);
  }

  function startToken(): void {
    tokenSrv = Bun.serve({ hostname: LOOPBACK, port: tokenPort, idleTimeout: 0, fetch: tokenFetch });
    tokenPort = tokenSrv.port ?? 0;
  }

  function startFront(): void {
    // idleTimeout 0: a "hang" must really hang, not be cut after Bun's 10 s default.
    front = Bun.serve({ hostname: LOOPBACK, port: frontPort, idleTimeout: 0, maxRequestBodySize: 1 << 30, fetch: frontFetch });
    frontPort = front.port ?? 0;
  }

  async function startCdn(): Promise<void> {
    const srv = http.createServer(cdnHandle);
    srv.on("connection", (s: Socket) => {
      cdnSockets.add(s);
      s.on("close", () => cdnSockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(cdnPort, LOOPBACK, () => resolve());
    });
    const addr = srv.address();
    if (addr && typeof addr === "object") cdnPort = addr.port;
    cdn = srv;
  }

  async function stopFrontAndCdn(): Promise<void> {
    releaseHung();
    if (front) {
      await front.stop(true);
      front = undefined;
    }
    if (cdn) {
      const srv = cdn;
      cdn = undefined;
      const closed = new Promise<void>((r) => srv.close(() => r()));
      for (const s of cdnSockets) s.destroy();
      cdnSockets.clear();
      await Promise.race([closed, Bun.sleep(2000)]);
    }
  }

  async function startRegistry(): Promise<void> {
    registry = spawnDaemon(["docker-registry", "serve", configFile], { logFile: registryLogFile });
    const r = registry;
    await waitFor(
      async () => {
        if (!r.alive()) throw new Error("docker-registry exited");
        const res = await fetch(`${registryUrl}/v2/`, { signal: AbortSignal.timeout(1000) });
        await res.body?.cancel();
        return res.status === 401;
      },
      { timeoutMs: 15_000, intervalMs: 50, what: `docker-registry on ${registryUrl}`, onTimeout: () => r.logTail() },
    );
  }

  let running = false;
  async function startAll(): Promise<void> {
    if (running) return;
    startToken();
    writeConfig();
    await startRegistry();
    startFront();
    await startCdn();
    running = true;
  }

  async function stopAll(): Promise<void> {
    await stopFrontAndCdn();
    if (tokenSrv) {
      await tokenSrv.stop(true);
      tokenSrv = undefined;
    }
    if (registry) {
      await registry.stop();
      registry = undefined;
    }
    running = false;
  }

  try {
    await startAll();
  } catch (e) {
    await stopAll().catch(() => {});
    if (!keepDir) rmSync(tmpDir, { recursive: true, force: true });
    unregisterRm();
    throw e;
  }

  async function token(scopes: string | string[], creds?: { username: string; password: string }): Promise<string> {
    const u = new URL(tokenUrl());
    u.searchParams.set("service", SERVICE);
    for (const s of Array.isArray(scopes) ? scopes : [scopes]) u.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    if (creds) headers.authorization = `Basic ${btoa(`${creds.username}:${creds.password}`)}`;
    const res = await fetch(u, { headers });
    if (res.status !== 200) throw new Error(`token server said ${res.status}: ${await res.text()}`);
    const body = (await res.json()) as { token: string };
    return body.token;
  }

  const upstream: Upstream = {
    get url() {
      return frontUrl();
    },
    get host() {
      return `${LOOPBACK}:${frontPort}`;
    },
    registryUrl,
    registryHost: `${LOOPBACK}:${registryPort}`,
    get tokenUrl() {
      return tokenUrl();
    },
    get cdnUrl() {
      return cdnUrl();
    },
    dataDir,
    tmpDir,
    registryLogFile,
    get registryPid() {
      return registry?.pid;
    },
    service: SERVICE,
    issuer: ISSUER,
    log,
    count: (filter = {}) => log.filter((e) => matchesFilter(e, filter)).length,
    entries: (filter = {}) => log.filter((e) => matchesFilter(e, filter)),
    clearLog: () => {
      log.length = 0;
    },
    get fault() {
      return fault;
    },
    async setFault(next: Fault | null) {
      const wasDown = fault?.kind === "down";
      fault = next;
      faultUses = 0;
      if (next?.kind !== "hang") releaseHung();
      if (next?.kind === "down" && !wasDown && running) await stopFrontAndCdn();
      if (next?.kind !== "down" && wasDown && running) {
        startFront();
        await startCdn();
      }
    },
    push: (image, ref, pushOpts) => pushImage(upstream, image, ref, pushOpts),
    token,
    cdnUrlFor,
    blobFile,
    stopAll,
    async start() {
      await startAll();
      if (fault?.kind === "down") await stopFrontAndCdn();
    },
    async stop() {
      await stopAll();
      if (!keepDir) rmSync(tmpDir, { recursive: true, force: true });
      unregisterRm();
    },
  };
  return upstream;
}

// Pushing test images --------------------------------------------------------------

/**
 * Copy a built image layout to the upstream with skopeo, as `pusher`, through
 * the front (so the token flow and Location rewriting are exercised) unless
 * `direct`. Verifies the registry then serves the expected top-level digest.
 */
export async function pushImage(
  upstream: Upstream,
  image: BuiltImage,
  ref: string,
  opts: { direct?: boolean } = {},
): Promise<PushResult> {
  const host = opts.direct ? upstream.registryHost : upstream.host;
  await run(
    [
      "skopeo", "copy", "--all", "--preserve-digests", "--quiet",
      "--dest-tls-verify=false", "--dest-creds", "pusher:pushpass",
      image.skopeoRef, `docker://${host}/${ref}`,
    ],
    { timeoutMs: 120_000 },
  );
  const [name, tag = "latest"] = splitRef(ref);
  const tok = await upstream.token(`repository:${name}:pull`, { username: "pusher", password: "pushpass" });
  const res = await fetch(`${upstream.registryUrl}/v2/${name}/manifests/${tag}`, {
    method: "HEAD",
    headers: { authorization: `Bearer ${tok}`, accept: ALL_MANIFEST_TYPES.join(", ") },
  });
  const digest = res.headers.get("docker-content-digest") ?? "";
  if (res.status !== 200 || digest !== image.manifestDigest) {
    throw new Error(`pushed ${ref}: registry says ${res.status} ${digest}, expected ${image.manifestDigest}`);
  }
  return { ref, digest };
}

/** "library/alpine:3.19" -> ["library/alpine", "3.19"]; digests ("name@sha256:…") keep the digest as tag. */
export function splitRef(ref: string): [string, string | undefined] {
  const at = ref.indexOf("@");
  if (at >= 0) return [ref.slice(0, at), ref.slice(at + 1)];
  const colon = ref.lastIndexOf(":");
  if (colon > ref.lastIndexOf("/")) return [ref.slice(0, colon), ref.slice(colon + 1)];
  return [ref, undefined];
}
