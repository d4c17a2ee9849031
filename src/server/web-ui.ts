// The web pages and the search relay:
//
//   GET /               landing page for people who pull (HTML for browsers; plain text
//                       for curl-like clients), with this mirror's URL filled in
//   GET /assets/<file>  its stylesheet and scripts, embedded in the binary
//   GET /v1/_ping       what `docker search` checks first
//   GET /v1/search      relayed to [search] upstream (Docker Hub's index), cached a minute
//   GET /ui             the operator dashboard (data from /api/status, /api/repositories)
//
// The dashboard is its own plugin (dashboardPages) so it can be guarded on its own; the
// landing page, its assets and the search relay are public.
import { Elysia } from "elysia";
import { LRUCache } from "lru-cache";
import pkg from "../../package.json" with { type: "json" };
import type { SearchSettings } from "../config/config.ts";
import { RegistryError } from "../protocol/errors.ts";
import type { Mirror } from "../registry/mirror.ts";
import { SingleFlight } from "../shared/single-flight.ts";
import { ASSETS } from "../ui/assets.ts";
import { renderDashboardShell } from "../ui/dashboard.ts";
import { PLAIN_TEXT_ANSWER, renderLanding } from "../ui/landing.ts";
import { toRegistryErrorResponse } from "./errors.ts";
import { requestUrl } from "../protocol/request-url.ts";
import { annotate } from "./request-log.ts";

const DEFAULT_SEARCH: SearchSettings = { enabled: true, upstream: "https://index.docker.io", timeoutMs: 10_000, cacheTtlMs: 60_000 };

/** Pages send no request anywhere but this server, and load nothing from elsewhere. */
const PAGE_HEADERS = {
  "Content-Type": "text/html; charset=utf-8",
  "Cache-Control": "no-cache",
  "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

/** What the pages use: the served registries, the config and the log. */
type PageServices = Pick<Mirror, "registries" | "config" | "log">;

export function webUi(mirror: PageServices) {
  return new Elysia({ name: "web-ui" }).use(publicPages(mirror)).use(searchRelay(mirror)).use(dashboardPages());
}

/** /, /assets/*: public. */
export function publicPages(mirror: PageServices) {
  const registries = () => mirror.registries.map((r) => ({ name: r.name, hosts: r.hosts }));
  return new Elysia({ name: "web-ui-public" })
    .get("/", ({ request }) => {
      if (!wantsHtml(request)) return new Response(PLAIN_TEXT_ANSWER, { headers: { "Content-Type": "text/plain; charset=utf-8" } });
      const body = renderLanding({
        mirrorUrl: mirrorUrlFor(request, mirror.config.server.publicUrl),
        registries: registries(),
        searchEnabled: (mirror.config.search ?? DEFAULT_SEARCH).enabled,
        version: pkg.version,
      });
      return new Response(body, { headers: { ...PAGE_HEADERS, Vary: "Accept, Host, X-Forwarded-Proto" } });
    })
    .get("/assets/:file", ({ params, request }) => {
      const asset = Object.hasOwn(ASSETS, params.file) ? ASSETS[params.file] : undefined;
      if (!asset) return new Response("not found\n", { status: 404, headers: { "Content-Type": "text/plain; charset=utf-8" } });
      const headers = { "Content-Type": asset.type, ETag: asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff" };
      if (request.headers.get("if-none-match") === asset.etag) return new Response(null, { status: 304, headers });
      return new Response(asset.body, { headers });
    });
}

/**
 * /ui: the operator dashboard. Put an auth guard here (e.g. `.onBeforeHandle(...)` on
 * this instance) to protect it; its data comes from /api/status and /api/repositories.
 */
export function dashboardPages() {
  const shell = () => new Response(renderDashboardShell(pkg.version), { headers: PAGE_HEADERS });
  return new Elysia({ name: "web-ui-dashboard" }).get("/ui", shell).get("/ui/", shell);
}

/** Browsers ask for text/html; curl, wget and registry clients do not. */
export function wantsHtml(request: Request): boolean {
  return /\btext\/html\b/i.test(request.headers.get("accept") ?? "");
}

/**
 * The URL clients should use for this mirror: [server] public_url when set, else the
 * request's Host with X-Forwarded-Proto (a TLS-terminating proxy) or the request's scheme.
 */
export function mirrorUrlFor(request: Request, publicUrl: string | undefined): string {
  if (publicUrl) return publicUrl.replace(/\/+$/, "");
  const url = requestUrl(request);
  const forwarded = request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  const scheme = forwarded === "https" || forwarded === "http" ? forwarded : url.protocol.replace(/:$/, "");
  let host = (request.headers.get("host") ?? url.host).trim().toLowerCase();
  if (!/^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(host)) host = "mirror_host";
  if ((scheme === "https" && host.endsWith(":443")) || (scheme === "http" && host.endsWith(":80"))) host = host.replace(/:\d+$/, "");
  return `${scheme}://${host}`;
}

// ---------------------------------------------------------------------------------------
// Search relay

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string>;
}

const MAX_QUERY = 255;
const MAX_BODY = 4 * 1024 * 1024;

/** GET /v1/search?q=&n=&page= → the configured index, at most once a minute per query. */
export class SearchRelay {
  private readonly cache: LRUCache<string, Answer>;
  /** Concurrent identical searches share one request to the index. */
  private readonly fetches = new SingleFlight<Answer>();

  constructor(
    private readonly settings: SearchSettings,
    private readonly userAgent: string,
  ) {
    this.cache = new LRUCache<string, Answer>({ max: 1000, ttl: Math.max(1, settings.cacheTtlMs) });
  }

  async search(url: URL): Promise<{ answer: Answer; cache: "hit" | "miss" }> {
    if (!this.settings.enabled) throw new RegistryError("UNSUPPORTED", "search is disabled on this mirror", { status: 404 });
    const q = (url.searchParams.get("q") ?? "").trim();
    if (!q) throw new RegistryError("UNSUPPORTED", 'search needs a term: /v1/search?q=<term>', { status: 400 });
    if (q.length > MAX_QUERY || /[\u0000-\u001f\u007f]/.test(q)) throw new RegistryError("UNSUPPORTED", `search term must be at most ${MAX_QUERY} printable characters`, { status: 400 });
    const n = intParam(url, "n", 25, 1, 100);
    const page = intParam(url, "page", 1, 1, 10_000);
    const query = new URLSearchParams({ q, n: String(n), ...(url.searchParams.has("page") && { page: String(page) }) });
    const key = query.toString();
    const cached = this.cache.get(key);
    if (cached) return { answer: cached, cache: "hit" };
    const answer = await this.fetches.run(key, () => this.fetch(query));
    return { answer, cache: "miss" };
  }

  private async fetch(query: URLSearchParams): Promise<Answer> {
    const target = `${this.settings.upstream}/v1/search?${query}`;
    const where = new URL(this.settings.upstream).host;
    let response: Response;
    try {
      response = await fetch(target, { headers: { Accept: "application/json", "User-Agent": this.userAgent }, signal: AbortSignal.timeout(this.settings.timeoutMs) });
    } catch (error) {
      const name = (error as Error).name;
      const why = name === "TimeoutError" || name === "AbortError" ? `timed out after ${Math.round(this.settings.timeoutMs / 1000)}s` : `unreachable (${(error as { code?: string }).code ?? (error as Error).message})`;
      throw new RegistryError("UNAVAILABLE", `search index ${where} ${why}`, { status: 502 });
    }
    let text: string;
    try {
      const declared = Number(response.headers.get("content-length") ?? 0);
      if (declared > MAX_BODY) throw new Error("answer too large");
      text = await withTimeout(response.text(), this.settings.timeoutMs);
      if (text.length > MAX_BODY) throw new Error("answer too large");
    } catch (error) {
      throw new RegistryError("UNAVAILABLE", `search index ${where}: ${(error as Error).message}`, { status: 502 });
    }
    if (response.status === 429) {
      const retryAfter = response.headers.get("retry-after");
      throw new RegistryError("TOOMANYREQUESTS", `search index ${where} is rate-limiting this mirror`, { headers: retryAfter && /^\d+$/.test(retryAfter) ? { "Retry-After": retryAfter } : {} });
    }
    if (response.status !== 200) throw new RegistryError("UNAVAILABLE", `search index ${where} answered HTTP ${response.status}`, { status: 502 });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new RegistryError("UNAVAILABLE", `search index ${where} answered something that is not JSON`, { status: 502 });
    }
    if (!parsed || typeof parsed !== "object" || !Array.isArray((parsed as { results?: unknown }).results)) {
      throw new RegistryError("UNAVAILABLE", `search index ${where} answered JSON without a results list`, { status: 502 });
    }
    const answer: Answer = { status: 200, body: JSON.stringify(parsed), headers: { "Content-Type": "application/json; charset=utf-8" } };
    this.cache.set(query.toString(), answer);
    return answer;
  }
}

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return fallback;
  if (!/^\d{1,6}$/.test(text)) throw new RegistryError("UNSUPPORTED", `${name} must be a number`, { status: 400 });
  return Math.min(max, Math.max(min, Number(text)));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no complete answer within ${Math.round(ms / 1000)}s`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** /v1/_ping and /v1/search: what the Docker daemon calls for `docker search MIRROR/term`. */
export function searchRelay(mirror: PageServices) {
  const relay = new SearchRelay(mirror.config.search ?? DEFAULT_SEARCH, `ferry/${pkg.version}`);
  return new Elysia({ name: "web-ui-search" })
    .get("/v1/_ping", () => new Response("{}", { headers: { "Content-Type": "application/json; charset=utf-8", "X-Docker-Registry-Standalone": "true" } }))
    .get("/v1/search", async ({ request }) => {
      try {
        const { answer, cache } = await relay.search(requestUrl(request));
        annotate(request, { cache });
        return new Response(answer.body, { status: answer.status, headers: { ...answer.headers, "Cache-Control": "no-cache", "X-Ferry-Cache": cache } });
      } catch (error) {
        const { error: e, response } = toRegistryErrorResponse(error, "GET");
        if (e.status >= 500 || e.status === 429) mirror.log.warn({ path: "/v1/search", code: e.code, error: e.message }, "search failed");
        return response;
      }
    });
}
