// The few browser APIs the client scripts use, typed here so the project's type check
// (no DOM lib: the server code runs on Bun) stays strict without pulling DOM types
// into every server file. Only dashboard-client.ts and landing-client.ts use it.

export interface El {
  id: string;
  innerHTML: string;
  textContent: string | null;
  value: string;
  hidden: boolean;
  className: string;
  dataset: Record<string, string | undefined>;
  classList: { add(...c: string[]): void; remove(...c: string[]): void; toggle(c: string, force?: boolean): boolean };
  setAttribute(name: string, value: string): void;
  getAttribute(name: string): string | null;
  addEventListener(type: string, listener: (event: Ev) => void): void;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  closest(selector: string): El | null;
  focus(): void;
  select?: () => void;
}

export interface Ev {
  target: El | null;
  key?: string;
  preventDefault(): void;
}

interface SelectionLike {
  removeAllRanges(): void;
  addRange(range: unknown): void;
}

interface DocumentLike {
  body: El;
  hidden: boolean;
  getElementById(id: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  addEventListener(type: string, listener: (event: Ev) => void): void;
  createRange(): { selectNodeContents(node: El): void };
  execCommand(command: string): boolean;
}

interface BrowserGlobals {
  document: DocumentLike;
  navigator: { clipboard?: { writeText(text: string): Promise<void> } };
  getSelection(): SelectionLike | null;
  location: { search: string };
  history: { replaceState(state: unknown, title: string, url: string): void };
}

export const browser = globalThis as unknown as BrowserGlobals;

export function byId(id: string): El {
  const el = browser.document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/** Copies text: the Clipboard API where allowed, else select it and execCommand("copy"). */
export async function copyText(text: string, source?: El): Promise<boolean> {
  try {
    if (browser.navigator.clipboard) {
      await browser.navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // not allowed here (insecure origin, no permission): fall back to a selection
  }
  if (source) selectContents(source);
  try {
    return browser.document.execCommand("copy");
  } catch {
    return false;
  }
}

export function selectContents(el: El): void {
  const selection = browser.getSelection();
  if (!selection) return;
  const range = browser.document.createRange();
  range.selectNodeContents(el);
  selection.removeAllRanges();
  selection.addRange(range);
}

/** Buttons with data-copy="ID" copy the text of #ID, and say so for a moment. */
export function wireCopyButtons(root: { querySelectorAll(selector: string): ArrayLike<El> }): void {
  for (const button of Array.from(root.querySelectorAll("button[data-copy]"))) {
    if (button.dataset.wired) continue;
    button.dataset.wired = "1";
    button.addEventListener("click", async () => {
      const target = browser.document.getElementById(button.dataset.copy ?? "");
      if (!target) return;
      const ok = await copyText(target.textContent ?? "", target);
      if (!ok) selectContents(target);
      const label = (button.dataset.label ??= button.textContent ?? "Copy");
      button.textContent = ok ? "Copied" : "Selected";
      button.classList.add("done");
      setTimeout(() => {
        button.textContent = label;
        button.classList.remove("done");
      }, 1500);
    });
  }
}
