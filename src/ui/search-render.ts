// Search results (Docker Hub's index JSON, relayed by /v1/search) as HTML. Pure: the
// landing page's search box renders with it; descriptions are untrusted text.
import { formatCount } from "./format.ts";
import { html, type Html } from "./html.ts";
import { toMirrorReference, type ServedRegistry } from "./reference.ts";

export interface SearchResult {
  name: string;
  description?: string | null;
  star_count?: number;
  is_official?: boolean;
  is_automated?: boolean;
}

export interface SearchAnswer {
  num_results?: number;
  query?: string;
  results: SearchResult[];
}

export function renderSearchResults(answer: SearchAnswer, query: string, mirrorHost: string, registries: readonly ServedRegistry[]): Html {
  const results = Array.isArray(answer.results) ? answer.results : [];
  if (results.length === 0) return html`<p class="empty">No images found for “${query}”.</p>`;
  const total = typeof answer.num_results === "number" ? answer.num_results : results.length;
  return html`<p class="muted small">${formatCount(total)} ${total === 1 ? "result" : "results"} for “${query}”${total > results.length ? html`, showing ${results.length}` : ""}</p>
<ul class="results">${results.map((r, i) => {
    const name = typeof r.name === "string" ? r.name : "";
    const ref = toMirrorReference(name, mirrorHost, registries);
    return html`<li class="result">
<div class="result-head"><strong class="result-name">${name}</strong>${r.is_official ? html`<span class="badge ok">official</span>` : ""}${r.is_automated ? html`<span class="badge">automated</span>` : ""}<span class="stars" title="stars">★ ${formatCount(Number(r.star_count) || 0)}</span></div>
${r.description ? html`<p class="result-desc">${String(r.description)}</p>` : ""}
${ref.ok ? html`<div class="cmd"><code id="search-pull-${i}">docker pull ${ref.mirror}</code><button type="button" class="copy small" data-copy="search-pull-${i}">Copy</button></div>` : ""}
</li>`;
  })}</ul>`;
}
