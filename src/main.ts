#!/usr/bin/env bun
// ferry's command line: serve | version | help.
import pkg from "../package.json" with { type: "json" };
import { parseRelayConfig, RelayConfigError, serveRelay } from "../relay/src/serve.ts";
import { ConfigError, loadConfigFile, parseListen } from "./config/load.ts";
import { createLogger } from "./observe/logger.ts";
import { serve } from "./serve.ts";

const HELP = `ferry ${pkg.version}: a pull-through mirror for Docker Hub, ghcr.io, quay.io and other OCI registries

Usage:
  ferry serve [--config FILE]   run the mirror (default config: $FERRY_CONFIG, else built-in defaults)
  ferry relay [--listen ADDR]   run the secondary-mirror relay (the Workers handler) on this host
  ferry version                 print the version
  ferry help | --help           this text

With no config, ferry listens on 0.0.0.0:5000, mirrors Docker Hub and the other
built-in registries, and caches under ./data. Environment overrides:
  FERRY_CONFIG FERRY_LISTEN FERRY_PUBLIC_URL FERRY_CACHE_DIR FERRY_CACHE_MAX_SIZE
  FERRY_TAG_TTL FERRY_NEGATIVE_TTL FERRY_LOG_LEVEL
See config.example.toml for every key.
`;

const RELAY_HELP = `Usage: ferry relay [--listen ADDR]

Runs the secondary-mirror relay (the same handler as relay/ on Cloudflare Workers) on this
host: /v2/… and /token relayed to the configured registries, token realm rewritten to
the relay, blob redirects followed here, GET/HEAD only. Configure with environment:
  RELAY_LISTEN (default :5001)   RELAY_REGISTRIES="docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io"
  RELAY_SECRET, RELAY_SECRET_HEADER (default x-ferry-relay-secret)   RELAY_DEFAULT_REGISTRY
  RELAY_PUBLIC_URL   RELAY_ALLOW_PRIVATE_REDIRECTS   RELAY_UPSTREAM_TIMEOUT_MS
See relay/README.md.
`;

function optionValue(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  const arg = args[i]!;
  if (arg.includes("=")) return arg.slice(arg.indexOf("=") + 1);
  const value = args[i + 1];
  if (value === undefined) fail(`${name} needs a value`);
  return value;
}

function fail(message: string): never {
  process.stderr.write(`ferry: ${message}\n`);
  process.exit(2);
}

async function main(args: string[]): Promise<void> {
  const command = args[0] ?? "help";
  const rest = args.slice(1);
  switch (command) {
    case "version":
    case "--version":
      process.stdout.write(`ferry ${pkg.version} (bun ${Bun.version})\n`);
      return;
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return;
    case "serve": {
      if (rest.includes("--help") || rest.includes("-h")) {
        process.stdout.write("Usage: ferry serve [--config FILE]\n\nRuns the mirror. See `ferry --help` for environment overrides.\n");
        return;
      }
      const configPath = optionValue(rest, "--config") ?? process.env.FERRY_CONFIG;
      let config;
      try {
        config = await loadConfigFile(configPath);
      } catch (error) {
        if (error instanceof ConfigError) fail(error.message);
        throw error;
      }
      let server;
      try {
        server = await serve(config);
      } catch (error) {
        if (error instanceof ConfigError) fail(error.message);
        throw error;
      }
      const shutdown = () => server.stop().then(() => process.exit(0));
      process.on("SIGTERM", shutdown);
      process.on("SIGINT", shutdown);
      return;
    }
    case "relay": {
      if (rest.includes("--help") || rest.includes("-h")) {
        process.stdout.write(RELAY_HELP);
        return;
      }
      let relay;
      try {
        const listen = parseListen(optionValue(rest, "--listen") ?? process.env.RELAY_LISTEN ?? ":5001", "--listen");
        const config = parseRelayConfig(process.env);
        const log = createLogger(process.env.FERRY_LOG_LEVEL ?? "info");
        relay = serveRelay({ ...listen, config, onRequest: (entry) => log.info(entry, "relay request") });
        log.info({ listen: relay.url, registries: Object.keys(config.registries), secret: Boolean(config.secret) }, "ferry relay listening");
      } catch (error) {
        if (error instanceof RelayConfigError || error instanceof ConfigError) fail(error.message);
        throw error;
      }
      const shutdown = () => {
        relay.stop();
        process.exit(0);
      };
      process.on("SIGTERM", shutdown);
      process.on("SIGINT", shutdown);
      return;
    }
    default:
      fail(`unknown command "${command}" (try ferry --help)`);
  }
}

await main(process.argv.slice(2));
