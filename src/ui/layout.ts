// The HTML page frame shared by / and /ui: one stylesheet, module scripts, no external assets.
import { html, raw, type Html, type HtmlValue } from "./html.ts";

export const LOGO = raw(
  `<svg class="logo" viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="8" fill="currentColor"/><path d="M7 17h18l-3 5H10z" fill="#fff"/><path d="M11 16v-5h6l3 5z" fill="#fff" opacity=".85"/><path d="M5 25c2 0 2-1.2 4-1.2s2 1.2 4 1.2 2-1.2 4-1.2 2 1.2 4 1.2 2-1.2 4-1.2 2 1.2 2 1.2" stroke="#fff" stroke-width="1.6" fill="none" stroke-linecap="round"/></svg>`,
);

export interface PageOptions {
  title: string;
  active: "home" | "dashboard";
  body: Html;
  scripts: string[]; // /assets/… module URLs
  data?: Record<string, string>; // data-* attributes on <body>
  version: string;
}

export function page(o: PageOptions): string {
  const attrs: HtmlValue[] = Object.entries(o.data ?? {}).map(([k, v]) => html` data-${raw(k.replace(/[^a-z0-9-]/g, ""))}="${v}"`);
  return `<!doctype html>\n${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${o.title}</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/style.css">
${o.scripts.map((s) => html`<script type="module" src="${s}"></script>\n`)}</head>
<body${attrs}>
<header class="topbar">
  <div class="topbar-inner">
    <a class="brand" href="/">${LOGO}<span>ferry</span></a>
    <nav class="topnav">
      <a href="/"${o.active === "home" ? raw(' aria-current="page"') : ""}>Pull</a>
      <a href="/ui"${o.active === "dashboard" ? raw(' aria-current="page"') : ""}>Dashboard</a>
    </nav>
  </div>
</header>
${o.body}
<footer class="footer"><div class="wrap">ferry ${o.version} · pull-through registry mirror · <a href="/metrics">metrics</a> · <a href="/api/status">status API</a></div></footer>
</body>
</html>`}\n`;
}

export const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8" fill="#0f766e"/><path d="M7 17h18l-3 5H10z" fill="#fff"/><path d="M11 16v-5h6l3 5z" fill="#fff" opacity=".85"/><path d="M5 25c2 0 2-1.2 4-1.2s2 1.2 4 1.2 2-1.2 4-1.2 2 1.2 4 1.2 2-1.2 4-1.2 2 1.2 2 1.2" stroke="#fff" stroke-width="1.6" fill="none" stroke-linecap="round"/></svg>\n`;
