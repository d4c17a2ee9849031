// The relay (relay/) on either runtime it is built for, behind one startRelay:
//   "bun"      serveRelay in this process (what `ferry relay` runs)
//   "workerd"  Cloudflare's runtime, from the npm packages wrangler and workerd: wrangler
//              bundles relay/src/worker.ts exactly as `wrangler deploy` would (offline, with
//              --dry-run), and workerd serves the bundle on loopback with a generated config,
//              its vars as text bindings, outbound fetches allowed to loopback (the harness
//              upstream). No download and no telemetry at run time.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RelayConfig } from "../../relay/src/config.ts";
import { serveRelay } from "../../relay/src/serve.ts";
import { freePort, run, spawnDaemon, waitForPort } from "./proc.ts";

export type RelayRuntime = "bun" | "workerd";
export const RELAY_RUNTIMES: RelayRuntime[] = ["bun", "workerd"];

export interface StartedRelay {
  /** http://127.0.0.1:PORT */
  url: string;
  stop(): Promise<void>;
}

const ROOT = resolve(import.meta.dir, "../..");
// No telemetry (wrangler logs "Dispatching disabled"), no update check (it runs with the
// banner), logs in the temp dir.
const QUIET = { WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", WRANGLER_LOG: "error", CI: "true", NO_UPDATE_NOTIFIER: "1" };

export async function startRelay(runtime: RelayRuntime, config: RelayConfig): Promise<StartedRelay> {
  if (runtime === "bun") {
    const server = serveRelay({ hostname: "127.0.0.1", port: 0, config });
    return { url: server.url, stop: async () => server.stop() };
  }
  return startWorkerd(config);
}

/** The Worker's vars for a RelayConfig, as wrangler.toml's [vars] and secrets would hold them. */
export function relayVars(config: RelayConfig): Record<string, string> {
  const vars: Record<string, string> = {
    RELAY_REGISTRIES: Object.entries(config.registries)
      .map(([name, r]) => `${name}=${r.upstream}`)
      .join(","),
  };
  if (config.defaultRegistry) vars.RELAY_DEFAULT_REGISTRY = config.defaultRegistry;
  if (config.secret) vars.RELAY_SECRET = config.secret;
  if (config.open) vars.RELAY_OPEN = "true";
  if (config.secretHeader) vars.RELAY_SECRET_HEADER = config.secretHeader;
  if (config.allowPrivateRedirects) vars.RELAY_ALLOW_PRIVATE_REDIRECTS = "true";
  if (config.publicUrl) vars.RELAY_PUBLIC_URL = config.publicUrl;
  if (config.upstreamTimeoutMs !== undefined) vars.RELAY_UPSTREAM_TIMEOUT_MS = String(config.upstreamTimeoutMs);
  return vars;
}

let bundled: Promise<string> | undefined;

/** relay/src/worker.ts bundled by wrangler, once per test process: the Workers build itself. */
export function workerBundle(): Promise<string> {
  bundled ??= (async () => {
    const out = mkdtempSync(join(tmpdir(), "ferry-worker-bundle-"));
    process.on("exit", () => rmSync(out, { recursive: true, force: true }));
    await run([join(ROOT, "node_modules/.bin/wrangler"), "deploy", "--dry-run", "--outdir", out], { cwd: join(ROOT, "relay"), env: { ...QUIET, WRANGLER_LOG_PATH: join(out, "logs"), XDG_CONFIG_HOME: join(out, "config") }, timeoutMs: 120_000 });
    rmSync(join(ROOT, "relay/.wrangler"), { recursive: true, force: true }); // wrangler's scratch dir
    return join(out, "worker.js");
  })();
  return bundled;
}

const capnpString = (s: string) => JSON.stringify(s); // Cap'n Proto text strings escape like JSON

async function startWorkerd(config: RelayConfig): Promise<StartedRelay> {
  const bundle = await workerBundle();
  const dir = mkdtempSync(join(tmpdir(), "ferry-workerd-"));
  copyFileSync(bundle, join(dir, "worker.js")); // embed paths are relative to the config
  const port = await freePort();
  const bindings = Object.entries(relayVars(config))
    .map(([name, value]) => `(name = ${capnpString(name)}, text = ${capnpString(value)})`)
    .join(", ");
  writeFileSync(
    join(dir, "relay.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "relay", worker = (
      modules = [(name = "worker.js", esModule = embed "worker.js")],
      compatibilityDate = "2025-06-01",
      bindings = [${bindings}],
      globalOutbound = "net",
    )),
    # The harness upstream and CDN listen on loopback: let the Worker's fetches reach them.
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "relay")],
);
`,
  );
  const daemon = spawnDaemon([join(ROOT, "node_modules/.bin/workerd"), "serve", join(dir, "relay.capnp")], { logFile: join(dir, "workerd.log"), env: QUIET, cwd: dir });
  try {
    const exited = daemon.exited.then((code) => {
      throw new Error(`workerd exited (${code}) at start:\n${daemon.logTail()}`);
    });
    await Promise.race([waitForPort(port, { timeoutMs: 20_000, what: "workerd", onTimeout: () => daemon.logTail() }), exited]);
    exited.catch(() => {});
  } catch (error) {
    await daemon.kill();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
