// The static assets of the web pages, embedded at bundle time (see build-assets.ts).
import { bundleScript, readAsset } from "./build-assets.ts" with { type: "macro" };
import { FAVICON } from "./layout.ts";

export interface Asset {
  body: string;
  type: string;
  etag: string;
}

function asset(body: string, type: string): Asset {
  return { body, type, etag: `"${Bun.hash(body).toString(36)}"` };
}

export const ASSETS: Record<string, Asset> = {
  "style.css": asset(readAsset("style.css"), "text/css; charset=utf-8"),
  "landing-client.js": asset(bundleScript("landing-client.ts"), "text/javascript; charset=utf-8"),
  "dashboard-client.js": asset(bundleScript("dashboard-client.ts"), "text/javascript; charset=utf-8"),
  "favicon.svg": asset(FAVICON, "image/svg+xml"),
};
