// Browser side of /ui: fetches /api/status and /api/repositories every 2 s and puts
// the rendered sections into the page (only those whose HTML changed, so a refresh
// does not disturb a selection or the filter box). Served as /assets/dashboard-client.js.
import { browser, byId, type El } from "./dom.ts";
import { renderCache, renderCharts, renderDownloads, renderRegistries, renderRepositories, renderSummary, repositoryCount, type RepositoryData, type StatusData } from "./dashboard-render.ts";
import type { Html } from "./html.ts";

const REFRESH_MS = 2000;
let windowMinutes = 60;
let status: StatusData | undefined;
let repositories: RepositoryData[] | undefined;
let failures = 0;

function put(id: string, content: Html | string): void {
  const el: El = byId(id);
  const markup = typeof content === "string" ? content : content.value;
  if (el.dataset.rendered === markup) return;
  el.innerHTML = markup;
  el.dataset.rendered = markup;
}

function render(): void {
  const now = Date.now();
  if (status) {
    put("summary", renderSummary(status));
    put("charts", renderCharts(status, now, windowMinutes));
    put("downloads", renderDownloads(status));
    put("cache", renderCache(status));
    put("registries", renderRegistries(status));
  }
  if (repositories) {
    put("repositories", renderRepositories(repositories, now, byId("repo-filter").value));
    byId("repo-count").textContent = repositoryCount(repositories);
  }
}

async function getJson<T>(path: string): Promise<T> {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (r.status === 401 || r.status === 403) throw new Error("not authorized: sign in to see the dashboard");
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

function live(ok: boolean, text: string): void {
  const el = byId("live");
  el.classList.toggle("down", !ok);
  byId("live-text").textContent = text;
}

async function refresh(): Promise<void> {
  try {
    const [s, r] = await Promise.all([getJson<StatusData>("/api/status"), getJson<{ repositories: RepositoryData[] }>("/api/repositories")]);
    status = s;
    repositories = Array.isArray(r.repositories) ? r.repositories : [];
    failures = 0;
    render();
    live(true, `live · updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
  } catch (error) {
    failures++;
    live(false, `${(error as Error).message || "unreachable"} · retrying`);
  } finally {
    setTimeout(() => void refresh(), browser.document.hidden ? REFRESH_MS * 5 : failures > 3 ? REFRESH_MS * 3 : REFRESH_MS);
  }
}

function start(): void {
  for (const button of Array.from(browser.document.querySelectorAll("button[data-window]"))) {
    button.addEventListener("click", () => {
      windowMinutes = Number(button.dataset.window) || 60;
      for (const b of Array.from(browser.document.querySelectorAll("button[data-window]"))) b.setAttribute("aria-pressed", String(b === button));
      render();
    });
  }
  byId("repo-filter").addEventListener("input", render);
  void refresh();
}

start();
