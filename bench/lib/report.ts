// Statistics and the results table (terminal, Markdown, JSON).

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function max(xs: number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

/** One line of the table: a metric for ferry and its peers, a ratio, and a target. */
export interface Row {
  id: string;
  scenario: string;
  metric: string;
  unit: string;
  ferry: number | string;
  nginx?: number | string;
  distribution?: number | string;
  direct?: number | string;
  /** ferry / reference, with what the reference is. */
  ratio?: { value: number; of: string };
  target?: string;
  pass?: boolean;
  note?: string;
}

export function fmt(v: number | string | undefined, unit = ""): string {
  if (v === undefined) return "–";
  if (typeof v === "string") return v;
  if (!Number.isFinite(v)) return "n/a";
  if (Number.isInteger(v) && !unit) return String(v);
  const a = Math.abs(v);
  const s = a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

function ratioText(r: Row["ratio"]): string {
  if (!r) return "–";
  return `${r.value >= 100 ? r.value.toFixed(0) : r.value.toFixed(2)}× ${r.of}`;
}

const HEAD = ["#", "scenario", "metric", "ferry", "nginx", "distribution", "direct", "ferry/peer", "target", "ok"];

function cells(r: Row): string[] {
  return [
    r.id,
    r.scenario,
    r.metric,
    fmt(r.ferry, r.unit),
    fmt(r.nginx, r.unit),
    fmt(r.distribution, r.unit),
    fmt(r.direct, r.unit),
    ratioText(r.ratio),
    r.target ?? "",
    r.pass === undefined ? "" : r.pass ? "yes" : "**NO**",
  ];
}

export function markdownTable(rows: Row[]): string {
  const lines = [`| ${HEAD.join(" | ")} |`, `|${HEAD.map(() => "---").join("|")}|`];
  for (const r of rows) lines.push(`| ${cells(r).join(" | ")} |`);
  return lines.join("\n");
}

export function terminalTable(rows: Row[]): string {
  const all = [HEAD, ...rows.map((r) => cells(r).map((c) => c.replace(/\*\*/g, "")))];
  const widths = HEAD.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  return [line(HEAD), widths.map((w) => "-".repeat(w)).join("  "), ...all.slice(1).map(line)].join("\n");
}

export interface ResultsJson {
  env: {
    date: string;
    cores: number;
    cpu: string;
    memGiB: number;
    kernel: string;
    bun: string;
    ferry: string;
    commit: string;
    dirtyTree: boolean;
    params: { blobMiB: number; rounds: number; quick: boolean };
    backgroundBusy: { median: number; max: number; runs: number; threshold: number; maxWaitMs: number };
  };
  rows: Row[];
  failed: string[];
  error?: string;
  raw: Record<string, unknown>;
}

export function renderMarkdown(j: ResultsJson): string {
  const { env, rows } = j;
  const bg = env.backgroundBusy;
  const notes = rows.filter((r) => r.note).map((r) => `- ${r.id} ${r.metric}: ${r.note}`);
  return [
    `# ferry benchmark results`,
    "",
    `${env.date.slice(0, 10)}, ${env.cores} cores (${env.cpu}), ${env.memGiB} GiB, Linux ${env.kernel}, Bun ${env.bun}; ferry: ${env.ferry} at ${env.commit}${env.dirtyTree ? " + uncommitted src/ changes" : ""}.`,
    `${env.params.quick ? "Quick run (--quick)" : "Full run"}: blobs ${env.params.blobMiB} MiB, ${env.params.rounds} round(s) per peer in alternating order, medians shown.`,
    `Machine CPU busy before a run (other work; runs wait up to ${bg.maxWaitMs / 1000} s for < ${bg.threshold * 100}%): median ${(bg.median * 100).toFixed(0)}%, max ${(bg.max * 100).toFixed(0)}% over ${bg.runs} runs.`,
    "",
    markdownTable(rows),
    "",
    ...(notes.length ? ["Notes:", "", ...notes, ""] : []),
    ...(j.error ? [`Run aborted: ${j.error}`, ""] : []),
  ].join("\n");
}
