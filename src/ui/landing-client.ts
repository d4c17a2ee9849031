// Browser side of the landing page: the reference converter, copy buttons and the
// search box. Served as /assets/landing-client.js (transpiled from this file).
import { browser, byId, wireCopyButtons } from "./dom.ts";
import { html } from "./html.ts";
import { toMirrorReference, type ServedRegistry } from "./reference.ts";
import { renderSearchResults, type SearchAnswer } from "./search-render.ts";

const body = browser.document.body;
const mirrorHost = body.dataset.mirrorHost ?? "";
const registries = JSON.parse(body.dataset.registries ?? "[]") as ServedRegistry[];

function convert(): void {
  const input = byId("ref-input");
  const output = byId("ref-output");
  const note = byId("ref-note");
  const copy = byId("ref-copy");
  const text = input.value.trim() || "nginx";
  const ref = toMirrorReference(text, mirrorHost, registries);
  const result = byId("ref-result");
  if (ref.ok) {
    output.textContent = ref.mirror;
    result.classList.remove("error");
    copy.hidden = false;
    note.innerHTML = html`${input.value.trim() ? html`<code>${ref.upstream}</code> from <strong>${ref.registry}</strong>.` : html`Example: <code>nginx</code>.`} Pull it with <code>docker pull ${ref.mirror}</code>${ref.aliases.length ? html`, or through the host alias <code>${ref.aliases[0]}</code>` : ""}.`.value;
  } else {
    output.textContent = ref.error;
    result.classList.add("error");
    copy.hidden = true;
    note.innerHTML = html`This mirror serves ${registries.map((r, i) => html`${i ? ", " : ""}<code>${r.name}</code>`)}.`.value;
  }
}

async function search(query: string): Promise<void> {
  const out = byId("search-results");
  const q = query.trim();
  if (!q) {
    out.innerHTML = "";
    return;
  }
  out.innerHTML = html`<p class="muted">Searching for “${q}”…</p>`.value;
  try {
    const r = await fetch(`/v1/search?${new URLSearchParams({ q, n: "25" })}`, { headers: { Accept: "application/json" } });
    const data = (await r.json()) as SearchAnswer & { errors?: { message?: string }[] };
    if (!r.ok) throw new Error(data.errors?.[0]?.message ?? `search failed (HTTP ${r.status})`);
    out.innerHTML = renderSearchResults(data, q, mirrorHost, registries).value;
    wireCopyButtons(out);
  } catch (error) {
    out.innerHTML = html`<p class="error-text">${(error as Error).message}</p>`.value;
  }
}

function start(): void {
  const input = byId("ref-input");
  input.addEventListener("input", convert);
  convert();
  wireCopyButtons(browser.document);
  const form = browser.document.getElementById("search-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void search(byId("search-q").value);
    });
  }
}

start();
