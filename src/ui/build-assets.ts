// Bundle-time helpers, imported `with { type: "macro" }` by assets.ts: they run when
// Bun transpiles assets.ts (under `bun src/main.ts` and `bun test`) and when
// `bun build --compile` makes dist/ferry, and their results are inlined as string
// literals. So the browser scripts and the stylesheet are part of the binary: nothing
// is read from disk at run time.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** One browser entry point (and everything it imports) as a single minified ES module. */
export function bundleScript(entry: string): string {
  // Bun.build cannot run inside a macro (the bundler waits for the macro): use the CLI.
  const result = Bun.spawnSync([process.execPath, "build", join(import.meta.dir, entry), "--target=browser", "--format=esm", "--minify"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  if (result.exitCode !== 0) throw new Error(`bundling ${entry} failed:\n${result.stderr.toString()}`);
  return result.stdout.toString();
}

/** A file next to this one, as text. */
export function readAsset(name: string): string {
  return readFileSync(join(import.meta.dir, name), "utf8");
}
