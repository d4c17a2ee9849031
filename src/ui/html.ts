// HTML built from strings with every interpolated value escaped. Runs on the server
// (the landing page) and in the browser (the dashboard): no DOM, no imports.
//
//   html`<td>${name}</td>`          name is escaped (it may come from an API)
//   html`<ul>${items.map(li)}</ul>` arrays are joined; Html values are inserted as is
//
// Only Html values (made by html`…` or raw()) are trusted; everything else is text.

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/** Text → HTML text or attribute value (quotes included, so it is safe in either). */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

function piece(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(piece).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += piece(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Markup that is already safe (a constant, or built by html`…`). Never pass API data. */
export function raw(markup: string): Html {
  return new Html(markup);
}
