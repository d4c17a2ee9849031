// Issue 6, the web part: the landing page at /, the search relay at /v1/search (through
// a real `docker search` in a real dockerd), the dashboard at /ui, and the compiled
// binary serving them. Pages are driven in headless Chromium (Debian's chromium package
// through playwright-core); screenshots go to .test-artifacts/web-ui-*.png.
//
// Stand-ins: a real upstream (distribution + token server + CDN, test/harness/upstream.ts)
// plays Docker Hub's registry. Docker Hub's search index has no offline equivalent, so a
// small Bun server on loopback answers /v1/search like index.docker.io does.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Page } from "playwright-core";
import { launchBrowser, type HeadlessBrowser } from "../harness/browser.ts";
import { skopeoCopy, startDockerd } from "../harness/clients.ts";
import { freePort, startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");

// ---------------------------------------------------------------------------------------
// A stand-in for index.docker.io's /v1/search

const NGINX_RESULTS = {
  num_pages: 1,
  num_results: 3,
  page_size: 25,
  page: 1,
  query: "nginx",
  results: [
    { name: "nginx", description: "Official build of Nginx.", star_count: 20875, is_official: true, is_automated: false },
    { name: "bitnami/nginx", description: "Bitnami container image for NGINX", star_count: 199, is_official: false, is_automated: false },
    { name: "nginxinc/nginx-unprivileged", description: "Unprivileged NGINX Dockerfiles", star_count: 153, is_official: false, is_automated: false },
  ],
};

interface SearchIndex {
  url: string;
  requests: URLSearchParams[];
  stop(): void;
}

function startSearchIndex(): SearchIndex {
  const requests: URLSearchParams[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const url = new URL(request.url);
      if (url.pathname !== "/v1/search") return new Response("not found", { status: 404 });
      requests.push(url.searchParams);
      const q = url.searchParams.get("q") ?? "";
      if (q === "slow") {
        await Bun.sleep(8_000);
        return Response.json({ num_results: 0, query: q, results: [] });
      }
      if (q === "broken") return new Response("upstream exploded", { status: 500 });
      if (q === "xss") {
        return Response.json({
          num_results: 1,
          query: q,
          results: [{ name: "evil/image", description: `<img src=x onerror="window.__xss=1">"><script>window.__xss=2</script>`, star_count: 1, is_official: false, is_automated: false }],
        });
      }
      if (q === "nginx") return Response.json({ ...NGINX_RESULTS, page_size: Number(url.searchParams.get("n") ?? 25) });
      return Response.json({ num_pages: 0, num_results: 0, page_size: 25, page: 1, query: q, results: [] });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, requests, stop: () => server.stop(true) };
}

// ---------------------------------------------------------------------------------------

let upstream: Upstream;
let index: SearchIndex;
let ferry: FerryProcess;
let image: BuiltImage;
let browser: HeadlessBrowser;
const tmpDirs: string[] = [];

function ferryConfig(upstreamUrl: string, indexUrl: string): string {
  return `[[registry]]\nname = "docker.io"\nendpoints = ["${upstreamUrl}"]\nallow_private_redirects = true\n[search]\nupstream = "${indexUrl}"\ntimeout = "2s"\n`;
}

beforeAll(async () => {
  index = startSearchIndex();
  upstream = await startUpstream();
  image = await fiveLayer({ seed: "web-ui" });
  await upstream.push(image, "library/webui-demo:1.0");
  ferry = await startFerry({ config: ferryConfig(upstream.url, index.url) });
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await ferry?.stop();
  await upstream?.stop();
  index?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

async function open(path: string, size?: { width: number; height: number }): Promise<Page> {
  const page = await browser.newPage(size);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  (page as Page & { jsErrors?: string[] }).jsErrors = errors;
  const r = await page.goto(`${ferry.url}${path}`, { waitUntil: "load" });
  expect(r?.status()).toBe(200);
  return page;
}

function jsErrors(page: Page): string[] {
  return (page as Page & { jsErrors?: string[] }).jsErrors ?? [];
}

/** Page width beyond the viewport: a phone layout must not scroll sideways. */
async function horizontalOverflow(page: Page): Promise<number> {
  return (await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")) as number;
}

describe("landing page /", () => {
  test("curl gets the plain-text answer; a browser gets HTML with this mirror's URL", async () => {
    const plain = await fetch(`${ferry.url}/`);
    expect(plain.headers.get("content-type")).toStartWith("text/plain");
    expect(await plain.text()).toContain("ferry: a pull-through registry mirror.");

    const page = await fetch(`${ferry.url}/`, { headers: { Accept: "text/html,application/xhtml+xml" } });
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    const text = await page.text();
    expect(text).toContain(`&quot;registry-mirrors&quot;: [&quot;${ferry.url}&quot;]`);
    expect(text).toContain("sudo systemctl restart docker");
    // containerd hosts.toml for every served registry, Docker Hub's server is registry-1
    expect(text).toContain(`server = &quot;https://registry-1.docker.io&quot;`);
    for (const r of ["ghcr.io", "quay.io", "registry.k8s.io", "mcr.microsoft.com"]) {
      expect(text).toContain(`/etc/containerd/certs.d/${r}/hosts.toml`);
      expect(text).toContain(`location = &quot;${ferry.host}/${r}&quot;`); // podman
      expect(text).toContain(`docker pull ${ferry.host}/${r}/`); // prefix pulls
    }
    expect(text).toContain(`[host.&quot;${ferry.url}&quot;]`);
    expect(text).toContain(`capabilities = [&quot;pull&quot;, &quot;resolve&quot;]`);
    expect(text).toContain("/etc/rancher/k3s/registries.yaml");
    expect(text).toContain(`docker pull ${ferry.host}/library/redis`);
    // no external assets
    expect(text).not.toMatch(/(src|href)="https?:\/\//);
  }, 20_000);

  test("behind a TLS proxy the URL comes from Host and X-Forwarded-Proto", async () => {
    const r = await fetch(`${ferry.url}/`, { headers: { Accept: "text/html", Host: "mirror.example.com", "X-Forwarded-Proto": "https" } });
    const text = await r.text();
    expect(text).toContain(`&quot;registry-mirrors&quot;: [&quot;https://mirror.example.com&quot;]`);
    expect(text).toContain(`location = &quot;mirror.example.com/ghcr.io&quot;`);
    expect(text).not.toContain("insecure = true");
    expect(text).toContain(`[host.&quot;https://mirror.example.com&quot;]`);
  }, 20_000);

  test("in Chromium: daemon.json names this mirror, the converter and the copy button work", async () => {
    await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ferry.url });
    const page = await open("/");
    const daemonJson = JSON.parse((await page.textContent("#snippet-daemon-json"))!) as Record<string, unknown>;
    expect(daemonJson["registry-mirrors"]).toEqual([ferry.url]);
    expect(await page.textContent("#mirror-host")).toBe(ferry.host);

    const convert = async (input: string) => {
      await page.fill("#ref-input", input);
      return (await page.textContent("#ref-output"))!.trim();
    };
    expect(await convert("nginx")).toBe(`${ferry.host}/library/nginx`);
    expect(await convert("nginx:1.27")).toBe(`${ferry.host}/library/nginx:1.27`);
    expect(await convert("ghcr.io/a/b:1")).toBe(`${ferry.host}/ghcr.io/a/b:1`);
    expect(await convert("registry.k8s.io/pause:3.9")).toBe(`${ferry.host}/registry.k8s.io/pause:3.9`);
    const digest = `sha256:${"ab".repeat(32)}`;
    expect(await convert(`docker.io/library/redis@${digest}`)).toBe(`${ferry.host}/library/redis@${digest}`);
    expect(await convert("localhost:5000/x")).toContain("localhost:5000 is not served by this mirror");
    expect(await page.isVisible("#ref-copy")).toBe(false);

    expect(await convert("ghcr.io/a/b:1")).toBe(`${ferry.host}/ghcr.io/a/b:1`);
    await page.click("#ref-copy");
    await page.waitForFunction("document.getElementById('ref-copy').textContent === 'Copied'", undefined, { timeout: 5_000 });
    expect(await page.evaluate("navigator.clipboard.readText()")).toBe(`${ferry.host}/ghcr.io/a/b:1`);

    // a snippet's copy button copies the snippet
    await page.click('button[data-copy="snippet-docker-restart"]');
    await page.waitForFunction("navigator.clipboard.readText().then(t => t.includes('systemctl restart docker'))", undefined, { timeout: 5_000 });

    await page.fill("#ref-input", "ghcr.io/a/b:1");
    await page.evaluate("window.scrollTo(0, 0)");
    await browser.screenshot(page, "web-ui-landing", { fullPage: false });
    await browser.screenshot(page, "web-ui-landing-full", { fullPage: true });
    expect(jsErrors(page)).toEqual([]);
    await page.close();
  }, 60_000);

  test("in Chromium at 390×844: the landing page fits a phone", async () => {
    const page = await open("/", { width: 390, height: 844 });
    await page.fill("#ref-input", "registry.k8s.io/pause:3.9");
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await browser.screenshot(page, "web-ui-landing-phone");
    expect(jsErrors(page)).toEqual([]);
    await page.close();
  }, 60_000);
});

describe("search /v1/search", () => {
  test("relays the index's JSON, caches it, and answers errors as JSON 502", async () => {
    const before = index.requests.length;
    const r = await fetch(`${ferry.url}/v1/search?q=nginx&n=25`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("application/json");
    const body = (await r.json()) as typeof NGINX_RESULTS;
    expect(body.num_results).toBe(3);
    expect(body.query).toBe("nginx");
    expect(body.results.map((x) => x.name)).toEqual(["nginx", "bitnami/nginx", "nginxinc/nginx-unprivileged"]);
    expect(body.results[0]).toMatchObject({ description: "Official build of Nginx.", star_count: 20875, is_official: true, is_automated: false });
    const again = await fetch(`${ferry.url}/v1/search?q=nginx&n=25`);
    expect(again.headers.get("x-ferry-cache")).toBe("hit");
    expect(await again.json()).toEqual(body);
    expect(index.requests.length).toBe(before + 1);
    expect(index.requests.at(-1)!.get("q")).toBe("nginx");
    expect(index.requests.at(-1)!.get("n")).toBe("25");

    const missing = await fetch(`${ferry.url}/v1/search`);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("UNSUPPORTED");

    const broken = await fetch(`${ferry.url}/v1/search?q=broken`);
    expect(broken.status).toBe(502);
    const brokenBody = (await broken.json()) as { errors: { code: string; message: string }[] };
    expect(brokenBody.errors[0]!.code).toBe("UNAVAILABLE");
    expect(brokenBody.errors[0]!.message).toContain("HTTP 500");

    const started = Date.now();
    const slow = await fetch(`${ferry.url}/v1/search?q=slow`);
    expect(slow.status).toBe(502);
    expect(((await slow.json()) as { errors: { message: string }[] }).errors[0]!.message).toContain("timed out");
    expect(Date.now() - started).toBeLessThan(5_000); // [search] timeout = "2s"
  }, 30_000);

  test("an unreachable index is a quick JSON 502", async () => {
    const closed = await freePort();
    const other = await startFerry({ config: ferryConfig(upstream.url, `http://127.0.0.1:${closed}`) });
    try {
      const r = await fetch(`${other.url}/v1/search?q=nginx`);
      expect(r.status).toBe(502);
      const body = (await r.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.code).toBe("UNAVAILABLE");
      expect(body.errors[0]!.message).toContain("unreachable");
    } finally {
      await other.stop();
    }
  }, 30_000);

  test("the landing page's search box shows results from the index, descriptions as text", async () => {
    const page = await open("/");
    await page.fill("#search-q", "nginx");
    await page.click("#search-form button[type=submit]");
    await page.waitForSelector("#search-results .result", { timeout: 10_000 });
    const names = await page.$$eval("#search-results .result-name", (els) => els.map((e) => e.textContent));
    expect(names).toEqual(["nginx", "bitnami/nginx", "nginxinc/nginx-unprivileged"]);
    expect(await page.textContent("#search-results")).toContain("Official build of Nginx.");
    expect(await page.textContent("#search-pull-0")).toBe(`docker pull ${ferry.host}/library/nginx`);
    expect(await page.textContent("#search-pull-1")).toBe(`docker pull ${ferry.host}/bitnami/nginx`);
    await page.locator("#search").scrollIntoViewIfNeeded();
    await browser.screenshot(page, "web-ui-search");

    await page.fill("#search-q", "xss");
    await page.click("#search-form button[type=submit]");
    await page.waitForSelector("#search-results .result-name >> text=evil/image", { timeout: 10_000 });
    expect(await page.$$eval("#search-results img, #search-results script", (els) => els.length)).toBe(0);
    expect(await page.textContent("#search-results .result-desc")).toContain('<img src=x onerror="window.__xss=1">');
    expect(await page.evaluate("window.__xss === undefined")).toBe(true);
    expect(jsErrors(page)).toEqual([]);
    await page.close();
  }, 60_000);

  test("a real `docker search MIRROR/nginx` through dockerd gets the index's results", async () => {
    const dockerd = await startDockerd({ mirrors: [ferry.url] });
    try {
      const before = index.requests.length;
      const r = await dockerd.docker(["search", "--no-trunc", `${ferry.host}/nginx`], { timeoutMs: 60_000 });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL/m);
      expect(r.stdout).toMatch(/^nginx\s+Official build of Nginx\.\s+20875\s+\[OK\]/m);
      expect(r.stdout).toContain("bitnami/nginx");
      expect(r.stdout).toContain("nginxinc/nginx-unprivileged");
      // the daemon asked for n=25; the answer may have come from ferry's cache
      const asked = index.requests.slice(before);
      for (const p of asked) expect(p.get("q")).toBe("nginx");
      const limited = await dockerd.docker(["search", "--limit", "2", `${ferry.host}/nginx`], { timeoutMs: 60_000 });
      expect(limited.code).toBe(0);
      expect(index.requests.at(-1)!.get("n")).toBe("2");
    } finally {
      await dockerd.stop();
    }
  }, 180_000);
});

describe("dashboard /ui", () => {
  test("shows a pull just made: repository, tag, hits and misses; fits a phone", async () => {
    for (let i = 0; i < 2; i++) {
      const dest = mkdtempSync(join(tmpdir(), "ferry-webui-pull-"));
      tmpDirs.push(dest);
      const pull = await skopeoCopy(`docker://${ferry.host}/library/webui-demo:1.0`, `dir:${dest}`, ["--src-tls-verify=false"]);
      expect(pull.stderr.includes("Error")).toBe(false);
      expect(pull.code).toBe(0);
    }
    const page = await open("/ui");
    await page.waitForSelector('.repo[data-repository="library/webui-demo"]', { timeout: 10_000 });
    const repo = page.locator('.repo[data-repository="library/webui-demo"]');
    expect(await repo.locator(".chip").allTextContents()).toEqual(["1.0"]);
    expect(await repo.textContent()).toContain("just now");
    const hits = Number((await page.textContent("#stat-hits"))!.replace(/,/g, ""));
    const misses = Number((await page.textContent("#stat-misses"))!.replace(/,/g, ""));
    expect(misses).toBeGreaterThan(0);
    expect(hits).toBeGreaterThan(0);
    expect(await page.textContent("#stat-saved .stat-value")).not.toBe("0 B");
    // charts drew bars for this minute; registries list the upstream as healthy
    expect(await page.locator("#chart-requests svg rect").count()).toBeGreaterThan(0);
    expect(await page.locator("#chart-bytes svg rect").count()).toBeGreaterThan(0);
    expect(await page.textContent("#registries")).toContain(upstream.url);
    expect(await page.textContent("#live-text")).toContain("live");
    // the filter narrows the list
    await page.fill("#repo-filter", "nothing-like-this");
    await page.waitForSelector("#repositories >> text=No cached repository matches", { timeout: 5_000 });
    await page.fill("#repo-filter", "webui");
    await page.waitForSelector('.repo[data-repository="library/webui-demo"]', { timeout: 5_000 });
    // it refreshes itself: a new pull appears without a reload
    const updatedBefore = await page.textContent("#live-text");
    await page.waitForFunction(`document.getElementById('live-text').textContent !== ${JSON.stringify(updatedBefore)}`, undefined, { timeout: 6_000 });
    await browser.screenshot(page, "web-ui-dashboard", { fullPage: true });

    await page.setViewportSize({ width: 390, height: 844 });
    await page.fill("#repo-filter", "");
    await page.waitForTimeout(300);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await page.evaluate("window.scrollTo(0, 0)");
    await browser.screenshot(page, "web-ui-dashboard-phone");
    await browser.screenshot(page, "web-ui-dashboard-phone-full", { fullPage: true });
    expect(jsErrors(page)).toEqual([]);
    await page.close();
  }, 120_000);

  test("hostile strings from the APIs are shown as text, never run", async () => {
    const page = await browser.newPage();
    const evil = `<img src=x onerror="window.__xss=1">`;
    await page.route("**/api/repositories", (route) =>
      route.fulfill({
        contentType: "application/json",
        body: JSON.stringify({
          repositories: [{ registry: "docker.io", repository: `${evil}/repo`, tags: [{ tag: `<script>window.__xss=2</script>`, digest: `sha256:"><svg onload=window.__xss=3>`, mediaType: "x", size: 1, checkedAt: new Date().toISOString(), pulledAt: new Date().toISOString() }] }],
        }),
      }),
    );
    await page.route("**/api/status", async (route) => {
      const real = (await (await fetch(`${ferry.url}/api/status`)).json()) as { registries: { endpoints: { lastError?: string; url: string }[] }[] };
      real.registries[0]!.endpoints[0]!.lastError = evil;
      real.registries[0]!.endpoints[0]!.url = `http://x/${evil}`;
      await route.fulfill({ contentType: "application/json", body: JSON.stringify(real) });
    });
    await page.goto(`${ferry.url}/ui`);
    await page.waitForSelector(".repo", { timeout: 10_000 });
    await page.waitForSelector("#registries table", { timeout: 10_000 });
    await page.waitForTimeout(500);
    expect(await page.$$eval("main img, main script, #repositories svg", (els) => els.length)).toBe(0);
    expect(await page.textContent("#repositories")).toContain(evil);
    expect(await page.textContent("#registries")).toContain(evil);
    expect(await page.evaluate("window.__xss === undefined")).toBe(true);
    await page.close();
  }, 60_000);
});

describe("dist binary", () => {
  test("the compiled binary serves the pages with their scripts embedded", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-webui-bin-"));
    tmpDirs.push(dir);
    const bin = join(dir, "ferry");
    const build = Bun.spawnSync([BUN, "build", "--compile", "--minify", join(ROOT, "src/main.ts"), "--outfile", bin], { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 150_000 });
    expect(build.stderr.toString()).not.toContain("error");
    expect(build.exitCode).toBe(0);
    const port = await freePort();
    writeFileSync(join(dir, "config.toml"), `[server]\nlisten = "127.0.0.1:${port}"\npublic_url = "https://mirror.example.com"\n[cache]\ndir = "${join(dir, "data")}"\n${ferryConfig(upstream.url, index.url)}`);
    // Run from another directory: nothing may be read from the source tree.
    const proc = Bun.spawn([bin, "serve", "--config", join(dir, "config.toml")], { cwd: dir, stdout: "ignore", stderr: "ignore" });
    try {
      const url = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 100; i++) {
        if ((await fetch(`${url}/healthz`).catch(() => null))?.ok) break;
        await Bun.sleep(50);
      }
      for (const asset of ["style.css", "landing-client.js", "dashboard-client.js", "favicon.svg"]) {
        const fromBinary = await fetch(`${url}/assets/${asset}`);
        expect(fromBinary.status).toBe(200);
        const fromSource = await fetch(`${ferry.url}/assets/${asset}`);
        expect(await fromBinary.text()).toBe(await fromSource.text());
      }
      expect((await fetch(`${url}/ui`)).status).toBe(200);
      const page = await browser.newPage();
      await page.goto(`${url}/`);
      expect(await page.textContent("#mirror-host")).toBe("mirror.example.com");
      expect(JSON.parse((await page.textContent("#snippet-daemon-json"))!)).toEqual({ "registry-mirrors": ["https://mirror.example.com"] });
      await page.fill("#ref-input", "quay.io/org/app:2");
      expect((await page.textContent("#ref-output"))!.trim()).toBe("mirror.example.com/quay.io/org/app:2");
      await page.close();
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 200_000);
});
