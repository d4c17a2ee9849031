// The web UI's pure parts: HTML escaping of everything the APIs return, the client
// snippets for a mirror URL, the [search] config section, the mirror URL a request
// implies, and the search relay's cache and error mapping (against a loopback stub).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { RegistryError } from "../../src/protocol/errors.ts";
import { SearchRelay, mirrorUrlFor, wantsHtml } from "../../src/server/web-ui.ts";
import { bucketize, niceMax, renderCache, renderCharts, renderDownloads, renderRegistries, renderRepositories, renderSummary, type RepositoryData, type StatusData } from "../../src/ui/dashboard-render.ts";
import { html, raw } from "../../src/ui/html.ts";
import { renderLanding } from "../../src/ui/landing.ts";
import { renderSearchResults } from "../../src/ui/search-render.ts";
import { containerdHostsToml, dockerDaemonJson, k3sRegistriesYaml, mirrorSite, podmanRegistriesConf, prefixExamples } from "../../src/ui/snippets.ts";

const EVIL = `<img src=x onerror="alert(1)">`;
const NOW = Date.parse("2026-05-01T12:00:30Z");

/**
 * Parses markup with Bun's HTMLRewriter (lol-html) and fails if any hostile string became
 * markup: an <img> or <script> element (other than the page's own module script), or
 * any on* event-handler attribute.
 */
async function expectInert(markup: string, allowScripts: string[] = []): Promise<void> {
  const found: string[] = [];
  await new HTMLRewriter()
    .on("*", {
      element(el) {
        const tag = el.tagName.toLowerCase();
        if (tag === "img" || (tag === "script" && !allowScripts.includes(el.getAttribute("src") ?? ""))) found.push(`<${tag}>`);
        for (const [name] of el.attributes) if (/^on/i.test(name)) found.push(`${tag}[${name}]`);
      },
    })
    .transform(new Response(markup))
    .text();
  expect(found).toEqual([]);
}

describe("html`…`", () => {
  test("escapes interpolations, joins arrays, trusts only Html", () => {
    expect(html`<p title="${`"x" & 'y'`}">${EVIL}</p>`.value).toBe(`<p title="&quot;x&quot; &amp; &#39;y&#39;">&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>`);
    expect(html`<ul>${["<a>", html`<li>${"<b>"}</li>`]}</ul>`.value).toBe("<ul>&lt;a&gt;<li>&lt;b&gt;</li></ul>");
    expect(html`${null}${undefined}${false}${0}`.value).toBe("0");
    expect(html`${raw("<br>")}`.value).toBe("<br>");
  });
});

describe("dashboard render functions", () => {
  const repos: RepositoryData[] = [
    {
      registry: "docker.io",
      repository: `${EVIL}/name`,
      tags: [
        { tag: `<script>alert(1)</script>`, digest: `sha256:"><svg onload=alert(1)>`, mediaType: "x", size: 1234, checkedAt: "2026-05-01T11:59:00Z", pulledAt: "2026-05-01T11:59:50Z" },
        { tag: "1.0", digest: `sha256:${"a".repeat(64)}`, mediaType: "x", size: null, checkedAt: "2026-05-01T10:00:00Z", pulledAt: null, policy: { immutable: true, ttlSeconds: null, rule: "docker.io" } },
      ],
    },
    { registry: "ghcr.io", repository: "owner/app", tags: [{ tag: "2", digest: `sha256:${"b".repeat(64)}`, size: 5 * 1024 * 1024, pulledAt: "2026-05-01T09:00:00Z" }] },
  ];

  test("a hostile repository name, tag and digest stay text", async () => {
    const out = renderRepositories(repos, NOW).value;
    await expectInert(out);
    expect(out).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;/name");
    expect(out).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(out).toContain(`data-repository="&lt;img`);
    // the most recent pull first; sizes and ages shown
    expect(out.indexOf("/name")).toBeLessThan(out.indexOf("owner/app"));
    expect(out).toContain("5.00 MiB");
    expect(out).toContain("just now");
    expect(out).toContain("3 h ago");
  });

  test("each tag says which tag policy it got (issue 19.2)", () => {
    const out = renderRepositories([{ ...repos[0]!, tags: [repos[0]!.tags[1]!, { tag: "latest", digest: `sha256:${"c".repeat(64)}`, size: 1, pulledAt: null, policy: { immutable: false, ttlSeconds: 600, rule: "docker.io tag_policy[0] (library/*)" } }] }], NOW).value;
    expect(out).toContain(`<td class="policy small" title="docker.io">immutable</td>`);
    expect(out).toContain(`<td class="policy small" title="docker.io tag_policy[0] (library/*)">ttl 10m</td>`);
  });

  test("the filter matches names and tags, and says when nothing matches", async () => {
    expect(renderRepositories(repos, NOW, "owner").value).not.toContain("/name");
    expect(renderRepositories(repos, NOW, "owner").value).toContain("owner/app");
    const none = renderRepositories(repos, NOW, `${EVIL}zzz`).value;
    expect(none).toContain("No cached repository matches");
    await expectInert(none);
    expect(renderRepositories([], NOW).value).toContain("Nothing cached yet");
  });

  test("status strings (endpoint URLs, errors, digests, cache dir) stay text", async () => {
    const status: StatusData = {
      version: EVIL,
      uptimeSeconds: 3700,
      registries: [
        {
          registry: EVIL,
          endpoints: [
            { url: `http://x/${EVIL}`, tier: 0, usedFor: ["manifest", "blob"], state: "open", coolingDown: true, cooldownReason: "failure", cooldownRemainingMs: 42_000, consecutiveFailures: 3, recentRateLimits: 0, lastError: EVIL, lastErrorAt: "2026-05-01T11:58:00Z" },
            { url: "https://relay.example", tier: 1, usedFor: ["manifest", "blob"], state: "closed", coolingDown: true, cooldownReason: "rate-limit", cooldownRemainingMs: 90_000, recentRateLimits: 4 },
          ],
          staleResponses: { manifest: 5, tags: 1 },
        },
      ],
      downloads: [{ key: "k", registry: EVIL, digest: EVIL, from: EVIL, bytes: 50, size: 200, state: EVIL }],
      cache: { dir: EVIL, bytes: 950, blobs: 3, maxBytes: 1000, shared: { kind: "s3", bucket: EVIL, redirect: true }, redis: { connected: false } },
      traffic: { requests: 3, hits: 2, misses: 1, bytesFromCache: 2048, bytesFromUpstream: 1024, hitRatio: 2 / 3, series: [{ minute: NOW - 60_000, requests: 3, hits: 2, misses: 1, bytesFromCache: 2048, bytesFromUpstream: 1024 }] },
    };
    const all = [renderSummary(status), renderCharts(status, NOW, 60), renderRegistries(status), renderDownloads(status), renderCache(status)].map((h) => h.value).join("\n");
    await expectInert(all);
    const registries = renderRegistries(status).value;
    expect(registries).toContain("down");
    expect(registries).toContain("rate-limited");
    expect(registries).toContain("42s");
    expect(registries).toContain("1m 30s");
    expect(registries).toContain("unavailable"); // both tiers cooling down
    expect(registries).toContain("6 stale"); // answers served from the cache while upstream failed
    expect(registries).toContain("5 manifest, 1 tags");
    expect(renderSummary(status).value).toContain("66.7%");
    expect(renderSummary(status).value).toContain("2.00 KiB");
    expect(renderDownloads(status).value).toContain("50 B of 200 B · 25.0%");
    expect(renderCache(status).value).toContain("disconnected");
    expect(renderCache(status).value).toContain("950 B of 1000 B (95.0%)");
  });

  test("charts: per-minute points fall into their buckets; axis maxima are round", () => {
    const series = [
      { minute: NOW - 30 * 60_000, requests: 5, hits: 4, misses: 1, bytesFromCache: 10, bytesFromUpstream: 1 },
      { minute: Math.floor(NOW / 60_000) * 60_000, requests: 2, hits: 2, misses: 0, bytesFromCache: 5, bytesFromUpstream: 0 },
      { minute: NOW - 3 * 60 * 60_000, requests: 9, hits: 9, misses: 0, bytesFromCache: 9, bytesFromUpstream: 0 },
    ];
    const hour = bucketize(series, NOW, 60);
    expect(hour).toHaveLength(60);
    expect(hour.reduce((s, b) => s + b.hits, 0)).toBe(6);
    expect(hour.at(-1)!.hits).toBe(2);
    const day = bucketize(series, NOW, 1440);
    expect(day).toHaveLength(60);
    expect(day.reduce((s, b) => s + b.hits, 0)).toBe(15);
    expect([niceMax(0), niceMax(7), niceMax(12), niceMax(300), niceMax(4100)]).toEqual([1, 10, 20, 500, 5000]);
    expect(renderCharts({ traffic: { requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0, hitRatio: null, series: [] } }, NOW, 60).value).toContain("No traffic in this window");
  });
});

describe("landing page and snippets", () => {
  const registries = [
    { name: "docker.io", hosts: [] },
    { name: "ghcr.io", hosts: ["ghcr.mirror.example.com"] },
  ];

  test("snippets for an HTTPS mirror", () => {
    const site = mirrorSite("https://mirror.example.com/", registries);
    expect(JSON.parse(dockerDaemonJson(site))).toEqual({ "registry-mirrors": ["https://mirror.example.com"] });
    expect(containerdHostsToml(site, "docker.io")).toBe(`server = "https://registry-1.docker.io"\n\n[host."https://mirror.example.com"]\n  capabilities = ["pull", "resolve"]\n`);
    expect(containerdHostsToml(site, "ghcr.io")).toStartWith(`server = "https://ghcr.io"`);
    expect(podmanRegistriesConf(site)).toContain(`[[registry]]\nprefix = "ghcr.io"\nlocation = "ghcr.io"\n\n[[registry.mirror]]\nlocation = "mirror.example.com/ghcr.io"\n`);
    expect(podmanRegistriesConf(site)).not.toContain("insecure");
    expect(Bun.YAML ? (Bun.YAML.parse(k3sRegistriesYaml(site)) as unknown) : undefined).toEqual({ mirrors: { "docker.io": { endpoint: ["https://mirror.example.com"] }, "ghcr.io": { endpoint: ["https://mirror.example.com"] } } });
    expect(prefixExamples(site)).toEqual([
      { registry: "docker.io", upstream: "redis", mirror: "mirror.example.com/library/redis", aliases: [] },
      { registry: "ghcr.io", upstream: "ghcr.io/owner/image:tag", mirror: "mirror.example.com/ghcr.io/owner/image:tag", aliases: ["ghcr.mirror.example.com/owner/image:tag"] },
    ]);
  });

  test("a plain-HTTP mirror off loopback is declared insecure", () => {
    const site = mirrorSite("http://10.0.0.5:5000", registries);
    expect(JSON.parse(dockerDaemonJson(site))).toEqual({ "registry-mirrors": ["http://10.0.0.5:5000"], "insecure-registries": ["10.0.0.5:5000"] });
    expect(podmanRegistriesConf(site)).toContain("insecure = true");
    const loopback = mirrorSite("http://127.0.0.1:5000", registries);
    expect(JSON.parse(dockerDaemonJson(loopback))).toEqual({ "registry-mirrors": ["http://127.0.0.1:5000"] });
  });

  test("the page escapes a hostile host name", async () => {
    const out = renderLanding({ mirrorUrl: `http://${EVIL}`, registries: [{ name: EVIL, hosts: [EVIL] }], searchEnabled: true, version: EVIL });
    await expectInert(out, ["/assets/landing-client.js"]);
  });
});

describe("mirror URL and content negotiation", () => {
  const req = (headers: Record<string, string>, url = "http://127.0.0.1:5000/") => new Request(url, { headers });
  test("public_url wins; else Host and X-Forwarded-Proto", () => {
    expect(mirrorUrlFor(req({ host: "a.example" }), "https://mirror.example.com/")).toBe("https://mirror.example.com");
    expect(mirrorUrlFor(req({ host: "Mirror.Example.com" }), undefined)).toBe("http://mirror.example.com");
    expect(mirrorUrlFor(req({ host: "mirror.example.com:443", "x-forwarded-proto": "https, http" }), undefined)).toBe("https://mirror.example.com");
    expect(mirrorUrlFor(req({ host: "10.1.2.3:5000", "x-forwarded-proto": "gopher" }), undefined)).toBe("http://10.1.2.3:5000");
    expect(mirrorUrlFor(req({ host: `"><script>` }), undefined)).toBe("http://mirror_host");
  });
  test("browsers get HTML; curl does not", () => {
    expect(wantsHtml(req({ accept: "text/html,application/xhtml+xml,*/*;q=0.8" }))).toBe(true);
    expect(wantsHtml(req({ accept: "*/*" }))).toBe(false);
    expect(wantsHtml(req({}))).toBe(false);
  });
});

describe("[search] config", () => {
  test("defaults", () => {
    expect(parseConfig("").search).toEqual({ enabled: true, upstream: "https://index.docker.io", timeoutMs: 10_000, cacheTtlMs: 60_000 });
  });
  test("keys", () => {
    expect(parseConfig(`[search]\nenabled = false\nupstream = "http://127.0.0.1:9/"\ntimeout = "3s"\ncache_ttl = "2m"\n`).search).toEqual({ enabled: false, upstream: "http://127.0.0.1:9", timeoutMs: 3000, cacheTtlMs: 120_000 });
  });
  test("errors name the key", () => {
    expect(() => parseConfig(`[search]\nupstream = "index.docker.io"\n`)).toThrow("search.upstream: must be an http(s) URL");
    expect(() => parseConfig(`[search]\ntimeout = "soon"\n`)).toThrow("search.timeout");
    expect(() => parseConfig(`[search]\nfoo = 1\n`)).toThrow("unknown key");
  });
});

describe("SearchRelay", () => {
  let server: ReturnType<typeof Bun.serve>;
  let hits = 0;
  let base = "";
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        hits++;
        const q = new URL(request.url).searchParams.get("q");
        if (q === "limited") return new Response("slow down", { status: 429, headers: { "Retry-After": "30" } });
        if (q === "html") return new Response("<html>maintenance</html>", { headers: { "Content-Type": "text/html" } });
        if (q === "noresults") return Response.json({ hello: 1 });
        await Bun.sleep(50);
        return Response.json({ num_results: 1, query: q, results: [{ name: q, description: "d", star_count: 1, is_official: false, is_automated: false }] });
      },
    });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.stop(true));
  const relay = () => new SearchRelay({ enabled: true, upstream: base, timeoutMs: 2000, cacheTtlMs: 60_000 }, "ferry/test");
  const u = (query: string) => new URL(`http://ferry/v1/search?${query}`);
  const fails = async (p: Promise<unknown>): Promise<RegistryError> => {
    try {
      await p;
    } catch (error) {
      return error as RegistryError;
    }
    throw new Error("did not fail");
  };

  test("concurrent and repeated queries reach the index once", async () => {
    const r = relay();
    const before = hits;
    const answers = await Promise.all([r.search(u("q=redis&n=25")), r.search(u("q=redis&n=25")), r.search(u("n=25&q=redis"))]);
    expect(hits - before).toBe(1);
    expect(JSON.parse(answers[0].answer.body).results[0].name).toBe("redis");
    expect((await r.search(u("q=redis&n=25"))).cache).toBe("hit");
    await r.search(u("q=redis&n=10"));
    expect(hits - before).toBe(2); // another page size is another query
  });

  test("errors: 429 stays 429 with Retry-After; non-JSON and JSON without results are 502", async () => {
    const r = relay();
    const limited = await fails(r.search(u("q=limited")));
    expect([limited.code, limited.status, limited.headers["Retry-After"]]).toEqual(["TOOMANYREQUESTS", 429, "30"]);
    const notJson = await fails(r.search(u("q=html")));
    expect([notJson.code, notJson.status]).toEqual(["UNAVAILABLE", 502]);
    expect((await fails(r.search(u("q=noresults")))).message).toContain("without a results list");
    expect((await fails(r.search(u("q=")))).status).toBe(400);
    expect((await fails(r.search(u("q=x&n=lots")))).status).toBe(400);
    expect((await fails(r.search(u(`q=${"x".repeat(300)}`)))).status).toBe(400);
    const disabled = new SearchRelay({ enabled: false, upstream: base, timeoutMs: 2000, cacheTtlMs: 60_000 }, "ferry/test");
    expect((await fails(disabled.search(u("q=x")))).status).toBe(404);
  });
});

describe("search results", () => {
  test("render as text with the mirror's pull command", async () => {
    const out = renderSearchResults({ num_results: 2, results: [{ name: "nginx", description: EVIL, star_count: 12345, is_official: true }, { name: EVIL, description: null }] }, EVIL, "m.example", [{ name: "docker.io", hosts: [] }]).value;
    await expectInert(out);
    expect(out).toContain("docker pull m.example/library/nginx");
    expect(out).toContain("12,345");
    expect(out).toContain("official");
  });
});
