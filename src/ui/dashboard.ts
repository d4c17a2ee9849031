// The operator dashboard at /ui: a static shell; dashboard-client.ts fills it from
// /api/status and /api/repositories every 2 s.
import { html } from "./html.ts";
import { page } from "./layout.ts";

export function renderDashboardShell(version: string): string {
  const body = html`<main class="wrap dashboard">
<div class="dash-head">
  <h1>Dashboard</h1>
  <span id="live" class="live" aria-live="polite"><span class="pulse"></span><span id="live-text">connecting…</span></span>
</div>
<noscript><p class="card">The dashboard needs JavaScript; the same data is at <a href="/api/status">/api/status</a> and <a href="/api/repositories">/api/repositories</a>.</p></noscript>
<section class="stats" id="summary" aria-label="Summary"></section>
<section class="card">
  <div class="card-head"><h2>Traffic</h2>
    <div class="seg" role="group" aria-label="Time window"><button type="button" data-window="60" aria-pressed="true">1 h</button><button type="button" data-window="360" aria-pressed="false">6 h</button><button type="button" data-window="1440" aria-pressed="false">24 h</button></div>
  </div>
  <div id="charts" class="charts"></div>
</section>
<div class="grid2">
  <section class="card"><h2>Downloads in flight</h2><div id="downloads"></div></section>
  <section class="card"><h2>Cache</h2><div id="cache"></div></section>
</div>
<section class="card"><h2>Upstream registries</h2><div id="registries"></div></section>
<section class="card">
  <div class="card-head"><h2>Cached repositories <span id="repo-count" class="muted small"></span></h2>
    <input id="repo-filter" class="input compact" type="search" placeholder="Filter repositories or tags" aria-label="Filter repositories" autocomplete="off" spellcheck="false">
  </div>
  <div id="repositories"></div>
</section>
</main>`;
  return page({ title: "ferry · dashboard", active: "dashboard", body, scripts: ["/assets/dashboard-client.js"], version });
}
