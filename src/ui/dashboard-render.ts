// The operator dashboard's sections as HTML strings, from the JSON of /api/status and
// /api/repositories. Pure (no DOM): dashboard-client.ts puts them into the page every
// refresh, and unit tests render them with hostile data. Every API string goes through
// html`…`, which escapes it: repository names, tags, URLs and errors are never markup.
import { formatAgo, formatBytes, formatCount, formatDuration, formatPercent } from "./format.ts";
import { html, type Html } from "./html.ts";

export interface TrafficPoint {
  minute: number;
  requests: number;
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

export interface EndpointStatus {
  url: string;
  tier: number;
  usedFor?: string[];
  state: string; // closed | open | half-open
  available?: boolean;
  coolingDown?: boolean;
  cooldownReason?: string;
  cooldownRemainingMs?: number;
  consecutiveFailures?: number;
  recentRateLimits?: number;
  lastError?: string;
  lastErrorAt?: string;
  lastSuccessAt?: string;
}

export interface DownloadStatus {
  key: string;
  registry: string;
  digest: string;
  from: string;
  bytes: number;
  size: number | null;
  state: string;
}

export interface StatusData {
  version?: string;
  uptimeSeconds?: number;
  registries?: { registry: string; endpoints: EndpointStatus[]; staleResponses?: Record<string, number> }[];
  downloads?: DownloadStatus[];
  cache?: {
    dir?: string;
    bytes: number;
    blobs: number;
    maxBytes: number | null;
    /** Why the cache disk counts as full; blobs are then streamed uncached. */
    diskFull?: string | null;
    shared?: { kind: string; bucket?: string; redirect?: boolean } | null;
    redis?: { connected: boolean } | null;
  };
  /** The HTTPS certificate (src/tls/cert-manager.ts CertificateState); null without TLS. */
  tls?: { source: string; status: string; domains: string[]; notAfter?: string; renewAt?: string; ordering?: boolean; lastError?: string; failures?: number } | null;
  traffic?: {
    requests: number;
    hits: number;
    misses: number;
    bytesFromCache: number;
    bytesFromUpstream: number;
    hitRatio: number | null;
    series: TrafficPoint[];
  };
}

export interface TagData {
  tag: string;
  digest: string;
  mediaType?: string;
  size: number | null;
  checkedAt?: string;
  pulledAt: string | null;
  /** The tag policy it got: immutable (never revalidated) or revalidated after ttlSeconds. */
  policy?: { immutable: boolean; ttlSeconds: number | null; rule: string };
}

export interface RepositoryData {
  registry: string;
  repository: string;
  tags: TagData[];
}

// ---------------------------------------------------------------------------------------
// Summary cards

export function renderSummary(s: StatusData): Html {
  const t = s.traffic ?? { requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0, hitRatio: null, series: [] };
  const c = s.cache ?? { bytes: 0, blobs: 0, maxBytes: null };
  const downloads = s.downloads ?? [];
  const totalBytes = t.bytesFromCache + t.bytesFromUpstream;
  const savedShare = totalBytes > 0 ? t.bytesFromCache / totalBytes : null;
  return html`<div class="stat" id="stat-hit-ratio">
  <div class="stat-label">Cache hit ratio</div>
  <div class="stat-value">${formatPercent(t.hitRatio)}</div>
  <div class="stat-sub"><span class="dot hit"></span><span id="stat-hits">${formatCount(t.hits)}</span> hits · <span class="dot miss"></span><span id="stat-misses">${formatCount(t.misses)}</span> misses</div>
</div>
<div class="stat" id="stat-saved">
  <div class="stat-label">Bandwidth saved</div>
  <div class="stat-value">${formatBytes(t.bytesFromCache)}</div>
  <div class="stat-sub">served from cache${savedShare === null ? "" : html` (${formatPercent(savedShare)})`} · ${formatBytes(t.bytesFromUpstream)} fetched upstream</div>
</div>
<div class="stat" id="stat-disk">
  <div class="stat-label">Cache on disk</div>
  <div class="stat-value">${formatBytes(c.bytes)}</div>
  <div class="stat-sub">${c.maxBytes ? html`of ${formatBytes(c.maxBytes)} (${formatPercent(c.bytes / c.maxBytes)})` : "no size limit"} · ${formatCount(c.blobs)} blobs</div>
  ${c.maxBytes ? bar(c.bytes / c.maxBytes, c.bytes / c.maxBytes > 0.9 ? "warn" : "ok") : ""}
</div>
<div class="stat" id="stat-downloads">
  <div class="stat-label">Downloading now</div>
  <div class="stat-value">${downloads.length}</div>
  <div class="stat-sub">${s.version ? html`ferry ${s.version}` : ""}${s.uptimeSeconds !== undefined ? html` · up ${formatDuration(s.uptimeSeconds * 1000)}` : ""}</div>
</div>`;
}

/** A horizontal bar in SVG (no inline styles: the pages run under a strict CSP). */
export function bar(ratio: number, tone: "ok" | "warn" | "busy" = "ok"): Html {
  const w = Math.max(0, Math.min(1, Number.isFinite(ratio) ? ratio : 0)) * 100;
  return html`<svg class="bar ${tone}" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true"><rect class="bar-track" width="100" height="6" rx="3"/><rect class="bar-fill" width="${w.toFixed(2)}" height="6" rx="3"/></svg>`;
}

// ---------------------------------------------------------------------------------------
// Traffic charts

export interface Bucket {
  start: number;
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

/** Per-minute points → evenly spaced buckets covering the last `windowMinutes` (gaps are zero). */
export function bucketize(series: readonly TrafficPoint[], now: number, windowMinutes: number, maxBars = 60): Bucket[] {
  const perBucket = Math.max(1, Math.ceil(windowMinutes / maxBars));
  const bucketMs = perBucket * 60_000;
  const count = Math.ceil(windowMinutes / perBucket);
  const end = Math.floor(now / 60_000) * 60_000 + 60_000;
  const start = end - count * bucketMs;
  const buckets: Bucket[] = Array.from({ length: count }, (_, i) => ({ start: start + i * bucketMs, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 }));
  for (const p of series) {
    const i = Math.floor((p.minute - start) / bucketMs);
    const b = buckets[i];
    if (!b) continue;
    b.hits += p.hits;
    b.misses += p.misses;
    b.bytesFromCache += p.bytesFromCache;
    b.bytesFromUpstream += p.bytesFromUpstream;
  }
  return buckets;
}

/** 1, 2, 5 × 10^n at or above `value`. */
export function niceMax(value: number): number {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= value) return m * exp;
  return 10 * exp;
}

interface StackSeries {
  key: "hits" | "misses" | "bytesFromCache" | "bytesFromUpstream";
  label: string;
  tone: string;
}

function stackedChart(id: string, title: string, buckets: Bucket[], series: [StackSeries, StackSeries], fmt: (n: number) => string, windowMinutes: number): Html {
  const W = 600;
  const H = 160;
  const slot = W / Math.max(1, buckets.length);
  const gap = Math.min(2, slot * 0.2);
  const max = niceMax(Math.max(0, ...buckets.map((b) => b[series[0].key] + b[series[1].key])));
  const total0 = buckets.reduce((s, b) => s + b[series[0].key], 0);
  const total1 = buckets.reduce((s, b) => s + b[series[1].key], 0);
  const bars = buckets.map((b, i) => {
    const a = b[series[0].key];
    const c = b[series[1].key];
    if (a + c === 0) return "";
    const ha = (a / max) * H;
    const hc = (c / max) * H;
    const x = (i * slot + gap / 2).toFixed(2);
    const w = Math.max(0.5, slot - gap).toFixed(2);
    const when = new Date(b.start).toISOString().slice(11, 16);
    return html`<g><title>${when} UTC: ${series[0].label} ${fmt(a)}, ${series[1].label} ${fmt(c)}</title><rect class="${series[0].tone}" x="${x}" y="${(H - ha).toFixed(2)}" width="${w}" height="${ha.toFixed(2)}"/><rect class="${series[1].tone}" x="${x}" y="${(H - ha - hc).toFixed(2)}" width="${w}" height="${hc.toFixed(2)}"/></g>`;
  });
  const grid = [0.25, 0.5, 0.75].map((f) => html`<line class="grid" x1="0" x2="${W}" y1="${(H * f).toFixed(1)}" y2="${(H * f).toFixed(1)}"/>`);
  const empty = total0 + total1 === 0;
  return html`<figure class="chart" id="${id}">
<figcaption><span class="chart-title">${title}</span><span class="legend"><span class="dot ${series[0].tone}"></span>${series[0].label} <strong>${fmt(total0)}</strong> <span class="dot ${series[1].tone}"></span>${series[1].label} <strong>${fmt(total1)}</strong></span></figcaption>
<div class="chart-plot">
  ${empty ? "" : html`<span class="y-max">${fmt(max)}</span>`}
  <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${title}">${grid}<line class="axis" x1="0" x2="${W}" y1="${H}" y2="${H}"/>${bars}</svg>
  ${empty ? html`<span class="chart-empty">No traffic in this window</span>` : ""}
</div>
<div class="x-axis"><span>${windowLabel(windowMinutes)} ago</span><span>${windowLabel(windowMinutes / 2)} ago</span><span>now</span></div>
</figure>`;
}

function windowLabel(minutes: number): string {
  return minutes >= 60 ? `${+(minutes / 60).toFixed(1)} h` : `${Math.round(minutes)} min`;
}

export function renderCharts(s: StatusData, now: number, windowMinutes: number): Html {
  const buckets = bucketize(s.traffic?.series ?? [], now, windowMinutes);
  const count = (n: number) => formatCount(n);
  return html`${stackedChart("chart-requests", "Requests: cache hits vs misses", buckets, [
    { key: "hits", label: "hits", tone: "hit" },
    { key: "misses", label: "misses", tone: "miss" },
  ], count, windowMinutes)}
${stackedChart("chart-bytes", "Bytes: served from cache vs fetched upstream", buckets, [
    { key: "bytesFromCache", label: "from cache", tone: "hit" },
    { key: "bytesFromUpstream", label: "upstream", tone: "miss" },
  ], formatBytes, windowMinutes)}`;
}

// ---------------------------------------------------------------------------------------
// Registries and their endpoints

function stateBadge(e: EndpointStatus): Html {
  if (e.state === "open") return html`<span class="badge bad">down</span>`;
  if (e.state === "half-open") return html`<span class="badge warn">probing</span>`;
  if (e.coolingDown) return html`<span class="badge warn">${e.cooldownReason === "rate-limit" ? "rate-limited" : "cooling down"}</span>`;
  return html`<span class="badge ok">healthy</span>`;
}

function registryHealth(endpoints: EndpointStatus[]): Html {
  if (endpoints.length === 0) return html`<span class="badge">no endpoints</span>`;
  const usable = endpoints.filter((e) => e.state !== "open" && !e.coolingDown).length;
  if (usable === endpoints.length) return html`<span class="badge ok">healthy</span>`;
  if (usable === 0) return html`<span class="badge bad">unavailable</span>`;
  return html`<span class="badge warn">degraded</span>`;
}

/** Answers served from the cache because upstream failed (since start), when there were any. */
function staleNote(stale: Record<string, number> | undefined): Html | string {
  const total = Object.values(stale ?? {}).reduce((a, b) => a + b, 0);
  if (total === 0) return "";
  const detail = Object.entries(stale ?? {}).map(([kind, n]) => `${n} ${kind}`).join(", ");
  return html` <span class="badge warn stale" title="served from the cache while the upstream failed: ${detail}">${total} stale</span>`;
}

export function renderRegistries(s: StatusData): Html {
  const regs = s.registries ?? [];
  if (regs.length === 0) return html`<p class="empty">No registries configured.</p>`;
  const rows = regs.flatMap((r) =>
    r.endpoints.map((e, i) => {
      const cooldown = e.cooldownRemainingMs ? formatDuration(e.cooldownRemainingMs) : "";
      const limits = e.recentRateLimits ?? 0;
      return html`<tr class="${i === 0 ? "first" : ""}">
<td data-label="Registry" class="reg">${i === 0 ? html`<strong>${r.registry}</strong>${r.endpoints.length > 1 ? html` ${registryHealth(r.endpoints)}` : ""}${staleNote(r.staleResponses)}` : ""}</td>
<td data-label="Tier" class="tier">${`#${e.tier + 1}`}${e.usedFor && e.usedFor.length < 2 ? html` <span class="muted small">${e.usedFor.join(", ")}</span>` : ""}</td>
<td data-label="Endpoint" class="url"><span class="tier-inline">${`#${e.tier + 1}`}</span>${e.url}</td>
<td data-label="State" class="state">${stateBadge(e)}</td>
<td data-label="Cooldown" class="${cooldown ? "" : "nil"}">${cooldown || "–"}</td>
<td data-label="429s (1 h)" class="${limits ? "warn-text" : "nil"}">${limits}</td>
<td data-label="Last error" class="err${e.lastError ? "" : " nil"}">${e.lastError ? html`${e.lastError}${e.lastErrorAt ? html` <span class="muted small">(${e.lastErrorAt.slice(11, 19)} UTC)</span>` : ""}` : html`<span class="muted">–</span>`}</td>
</tr>`;
    }),
  );
  return html`<div class="table-wrap"><table class="stack endpoints">
<thead><tr><th>Registry</th><th>Tier</th><th>Endpoint</th><th>State</th><th>Cooldown</th><th>429s (1 h)</th><th>Last error</th></tr></thead>
<tbody>${rows}</tbody></table></div>`;
}

// ---------------------------------------------------------------------------------------
// Downloads in flight, cache state

export function renderDownloads(s: StatusData): Html {
  const downloads = s.downloads ?? [];
  if (downloads.length === 0) return html`<p class="empty">No downloads in flight.</p>`;
  return html`<ul class="downloads">${downloads.map((d) => {
    const ratio = d.size ? d.bytes / d.size : 0;
    return html`<li class="download">
<div class="download-head"><span class="mono">${d.registry} · ${shortDigest(d.digest)}</span><span class="muted small">${d.from} · ${d.state}</span></div>
${d.size ? bar(ratio, "busy") : html`<svg class="bar busy indeterminate" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true"><rect class="bar-track" width="100" height="6" rx="3"/><rect class="bar-fill" width="30" height="6" rx="3"/></svg>`}
<div class="small">${formatBytes(d.bytes)}${d.size ? html` of ${formatBytes(d.size)} · ${formatPercent(ratio)}` : " (size unknown)"}</div>
</li>`;
  })}</ul>`;
}

export function renderCache(s: StatusData): Html {
  const c = s.cache;
  if (!c) return html`<p class="empty">No cache information.</p>`;
  const ratio = c.maxBytes ? c.bytes / c.maxBytes : null;
  return html`<dl class="facts">
<dt>Disk</dt><dd>${formatBytes(c.bytes)}${c.maxBytes ? html` of ${formatBytes(c.maxBytes)} (${formatPercent(ratio)})` : html` <span class="muted">(no cache.max_size)</span>`}${ratio !== null ? bar(ratio, ratio > 0.9 ? "warn" : "ok") : ""}</dd>
${c.diskFull ? html`<dt>Disk full</dt><dd><span class="badge bad">full</span> blobs are streamed without caching: ${c.diskFull}</dd>` : ""}
<dt>Blobs</dt><dd>${formatCount(c.blobs)}</dd>
${c.dir ? html`<dt>Directory</dt><dd class="mono">${c.dir}</dd>` : ""}
<dt>Shared tier (S3)</dt><dd>${c.shared ? html`<span class="badge ok">on</span> bucket <span class="mono">${c.shared.bucket ?? "?"}</span>${c.shared.redirect ? " · clients redirected to S3" : ""}` : html`<span class="badge">off</span>`}</dd>
<dt>Redis</dt><dd>${c.redis ? (c.redis.connected ? html`<span class="badge ok">connected</span>` : html`<span class="badge bad">disconnected</span>`) : html`<span class="badge">off</span>`}</dd>
${renderCertificate(s.tls)}
</dl>`;
}

/** The HTTPS certificate row: where from, until when, and why the last order failed. */
function renderCertificate(t: StatusData["tls"]): Html {
  if (!t) return html`<dt>Certificate</dt><dd><span class="badge">no HTTPS</span></dd>`;
  const badge = t.status === "valid" ? html`<span class="badge ok">valid</span>` : html`<span class="badge bad">${t.status === "none" ? "none yet" : t.status}</span>`;
  return html`<dt>Certificate</dt><dd>${badge} <span class="mono">${t.domains.join(", ")}</span> · ${t.source}${t.notAfter ? html` · until <span class="mono">${t.notAfter}</span>` : ""}${t.renewAt ? html` · next order <span class="mono">${t.renewAt}</span>` : ""}${t.ordering ? " · ordering now" : ""}${t.lastError ? html`<div class="small"><span class="badge bad">${t.failures ?? 1} failed</span> ${t.lastError}</div>` : ""}</dd>`;
}

function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return colon >= 0 ? `${digest.slice(0, colon + 1)}${digest.slice(colon + 1, colon + 13)}` : digest.slice(0, 19);
}

// ---------------------------------------------------------------------------------------
// Cached repositories

function lastPull(r: RepositoryData): number {
  return Math.max(0, ...r.tags.map((t) => (t.pulledAt ? Date.parse(t.pulledAt) || 0 : 0)));
}

/** The name people pull: Docker Hub's without a prefix, others with their registry. */
export function displayName(r: Pick<RepositoryData, "registry" | "repository">): string {
  return r.registry === "docker.io" ? r.repository : `${r.registry}/${r.repository}`;
}

export function renderRepositories(repos: readonly RepositoryData[], now: number, filter = "", limit = 200): Html {
  const f = filter.trim().toLowerCase();
  const matching = repos
    .filter((r) => !f || displayName(r).toLowerCase().includes(f) || r.tags.some((t) => t.tag.toLowerCase().includes(f)))
    .slice()
    .sort((a, b) => lastPull(b) - lastPull(a) || displayName(a).localeCompare(displayName(b)));
  if (repos.length === 0) return html`<p class="empty">Nothing cached yet. Pull an image through this mirror and it shows up here.</p>`;
  if (matching.length === 0) return html`<p class="empty">No cached repository matches “${filter}”.</p>`;
  const shown = matching.slice(0, limit);
  return html`<ul class="repos">${shown.map((r) => {
    const size = r.tags.reduce((s, t) => s + (t.size ?? 0), 0);
    const tags = r.tags.slice().sort((a, b) => (Date.parse(b.pulledAt ?? "") || 0) - (Date.parse(a.pulledAt ?? "") || 0));
    return html`<li class="repo" data-repository="${displayName(r)}">
<div class="repo-head"><span class="repo-name"><span class="muted">${r.registry} /</span> ${r.repository}</span><span class="muted small">${tags.length} ${tags.length === 1 ? "tag" : "tags"}${size ? html` · ${formatBytes(size)}` : ""} · pulled ${formatAgo(lastPull(r) ? new Date(lastPull(r)).toISOString() : null, now)}</span></div>
<table class="tags"><tbody>${tags.map(
      (t) => html`<tr class="tag-row">
<td class="tag"><span class="chip">${t.tag}</span></td>
<td class="mono digest" title="${t.digest}">${shortDigest(t.digest)}</td>
<td class="num">${t.size === null ? html`<span class="muted" title="multi-platform index">index</span>` : formatBytes(t.size)}</td>
<td class="policy small" title="${t.policy?.rule ?? ""}">${t.policy ? (t.policy.immutable ? "immutable" : html`ttl ${formatDuration((t.policy.ttlSeconds ?? 0) * 1000)}`) : ""}</td>
<td class="when">${formatAgo(t.pulledAt, now)}</td>
</tr>`,
    )}</tbody></table>
</li>`;
  })}</ul>${matching.length > shown.length ? html`<p class="muted small">Showing ${shown.length} of ${matching.length} repositories; filter to narrow down.</p>` : ""}`;
}

/** The header's one-line summary of what is cached. */
export function repositoryCount(repos: readonly RepositoryData[]): string {
  const tags = repos.reduce((s, r) => s + r.tags.length, 0);
  return `${formatCount(repos.length)} ${repos.length === 1 ? "repository" : "repositories"} · ${formatCount(tags)} ${tags === 1 ? "tag" : "tags"}`;
}

