// Headless Chromium (Debian's `chromium` package) driven by playwright-core, for tests
// that look at ferry's pages as a person would. Nothing is downloaded: playwright-core
// only speaks CDP to /usr/bin/chromium. Each launch gets a fresh profile directory,
// removed on close; the browser process is ended by close() or, as a safety net, on exit.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM_PATH = process.env.FERRY_CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS_DIR = resolve(import.meta.dir, "../../.test-artifacts");

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Nothing but loopback: any other host name fails to resolve inside the browser.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
  "--proxy-server=direct://",
  "--proxy-bypass-list=*",
];

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

export interface HeadlessBrowser {
  context: BrowserContext;
  newPage(opts?: { width?: number; height?: number }): Promise<Page>;
  /** Saves a screenshot under .test-artifacts/<name>.png and returns its path. */
  screenshot(page: Page, name: string, opts?: { fullPage?: boolean }): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(opts: { width?: number; height?: number; deviceScaleFactor?: number } = {}): Promise<HeadlessBrowser> {
  if (!chromiumAvailable()) throw new Error(`${CHROMIUM_PATH} not found: install Debian's chromium package (scripts/install-deps.sh --test)`);
  const profile = mkdtempSync(join(tmpdir(), "ferry-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 900 },
    deviceScaleFactor: opts.deviceScaleFactor ?? 1,
    // Tests check that pages escape what they show; the pages' CSP would hide a failure.
    bypassCSP: true,
    timeout: 30_000,
    env: { ...process.env, HOME: profile },
  });
  // playwright-core ends the browser it launched when this process exits; the profile goes too.
  const safety = () => rmSync(profile, { recursive: true, force: true });
  process.once("exit", safety);
  let closed = false;
  return {
    context,
    async newPage(size = {}) {
      const page = await context.newPage();
      if (size.width || size.height) await page.setViewportSize({ width: size.width ?? 1280, height: size.height ?? 900 });
      return page;
    },
    async screenshot(page, name, o = {}) {
      mkdirSync(ARTIFACTS_DIR, { recursive: true });
      const path = join(ARTIFACTS_DIR, `${name}.png`);
      await page.screenshot({ path, fullPage: o.fullPage ?? false });
      return path;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.race([context.close(), Bun.sleep(10_000)]);
      process.removeListener("exit", safety);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
