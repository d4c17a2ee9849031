// Cloudflare Workers entry: configuration comes from the Worker's vars and secrets
// (see ../wrangler.toml). The handler is built once per isolate and kept while the settings
// stay the same, so the token realms it learns survive between requests.
import { RelayConfigError } from "./config.ts";
import { errorResponse } from "./errors.ts";
import { createRelayHandler, parseRelayConfig, type RelayHandler } from "./handler.ts";

type Env = Record<string, unknown>;

let cached: { key: string; handler: RelayHandler } | undefined;

function relayVars(env: Env): Record<string, string | undefined> {
  const vars: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith("RELAY_") && typeof value === "string") vars[name] = value; // skip bindings (KV, R2…)
  }
  return vars;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const vars = relayVars(env);
    const key = JSON.stringify(vars);
    if (cached?.key !== key) {
      try {
        cached = { key, handler: createRelayHandler(parseRelayConfig(vars)) };
      } catch (error) {
        // A Worker has no start-up to refuse: it refuses every request instead, naming the variable.
        if (error instanceof RelayConfigError) return errorResponse(500, "UNKNOWN", `relay misconfigured: ${error.message}`);
        throw error;
      }
    }
    return cached.handler(request);
  },
};
