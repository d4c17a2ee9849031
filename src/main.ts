#!/usr/bin/env bun
// ferry's command line: serve | relay | check | warm | prune | version | help.
import pkg from "../package.json" with { type: "json" };
import type { Config } from "./config/config.ts";
import { ConfigError, loadConfigFile, parseListen } from "./config/load.ts";
import { parseDuration, parseSize } from "./config/units.ts";
import { createLogger } from "./observe/logger.ts";
import { serve } from "./serve.ts";

const HELP = `ferry ${pkg.version}: a pull-through mirror for Docker Hub, ghcr.io, quay.io and other OCI registries

Usage:
  ferry serve [--config FILE]     run the mirror (default config: $FERRY_CONFIG, else built-in defaults)
  ferry check [--config FILE] [IMAGE:TAG…]
                                  validate the config, probe every endpoint, Redis and S3;
                                  show the tag policy (of each IMAGE:TAG named)
  ferry warm IMAGE… | --file LIST pre-fetch images into a running ferry's cache
  ferry prune [--max-size SIZE] [--older-than AGE] [--s3-orphans]
                                  trim the local cache; remove orphans from S3
  ferry relay [--listen ADDR] [--open]
                                  run the secondary-mirror relay (the Workers handler) on this host
  ferry version                   print the version
  ferry <command> --help          help for one command

With no config, ferry listens on 0.0.0.0:5000, mirrors Docker Hub and the other
built-in registries, and caches under ./data. Environment overrides:
  FERRY_CONFIG FERRY_LISTEN FERRY_PUBLIC_URL FERRY_CACHE_DIR FERRY_CACHE_MAX_SIZE
  FERRY_TAG_TTL FERRY_NEGATIVE_TTL FERRY_LOG_LEVEL FERRY_MEMORY_LIMIT FERRY_REDIS_URL FERRY_S3_*
See config.example.toml for every key.
`;

const COMMAND_HELP: Record<string, string> = {
  serve: `Usage: ferry serve [--config FILE]

Runs the mirror. SIGTERM drains (in-flight downloads finish, up to 30 s); SIGHUP reloads
the config without dropping connections (registries, endpoints, auth, limits, log level,
TTLs; listen, TLS, cache.dir, cache.max_size, [redis] and [s3] need a restart).
`,
  check: `Usage: ferry check [--config FILE] [IMAGE:TAG…]

Validates the config (a bad key is named), then probes the cache dir, Redis, S3 and every
upstream endpoint (GET /v2/ with the token flow) and prints a table. Then the tag policy:
the configured rules, or for each IMAGE:TAG named which policy it gets (immutable or its
tag_ttl) and from which rule. Exit code 0 when every check passed, 1 otherwise, 2 for an
invalid config.
`,
  warm: `Usage: ferry warm [--mirror URL] [--platform OS/ARCH[/VARIANT]] [--user USER:PASS]
                  [--concurrency N] [--file LIST] IMAGE…

Pre-fetches images into a running ferry by pulling them through it (manifests and every
blob), so its cache, and with replicas the shared Redis and S3, are warm before clients
come. IMAGE is any reference: nginx, nginx:1.27, ghcr.io/owner/img:tag, registry.k8s.io/pause:3.9.
All platforms unless --platform. --file reads references one per line (# comments).
--mirror defaults to this config's listen address. With client auth on, pass --user
(an htpasswd user, or any name with a static token as password; or FERRY_WARM_USER).
Exit code 1 if any image failed.
`,
  prune: `Usage: ferry prune [--config FILE] [--max-size SIZE] [--older-than AGE] [--s3-orphans [--grace AGE]] [--dry-run]

Trims the local blob tier: down to SIZE (least recently used first; "20GiB"), and/or
blobs not used for AGE ("30d", "12h"), with the tags and manifests unused for as long. --s3-orphans removes blobs from the S3 store that no
cached manifest refers to (older than --grace, default 24h, so uploads in progress are safe; with Redis,
every replica's manifests count), and aborts multipart uploads older than --grace (left open by a
replica that was killed). Safe while ferry serves: a pruned blob becomes a miss.
`,
  relay: `Usage: ferry relay [--listen ADDR] [--open]

Runs the secondary-mirror relay (the same handler as relay/ on Cloudflare Workers) on this
host: /v2/… and /token relayed to the configured registries, token realm rewritten to
the relay, blob redirects followed here, GET/HEAD only. Configure with environment:
  RELAY_LISTEN (default :5001)   RELAY_REGISTRIES="docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io"
  RELAY_SECRET (required; --open or RELAY_OPEN=true relays for anyone without one, on purpose)
  RELAY_SECRET_HEADER (default x-ferry-relay-secret)   RELAY_DEFAULT_REGISTRY
  RELAY_PUBLIC_URL   RELAY_ALLOW_PRIVATE_REDIRECTS   RELAY_UPSTREAM_TIMEOUT_MS
See relay/README.md.
`,
};

function optionValue(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  const arg = args[i]!;
  if (arg.includes("=")) return arg.slice(arg.indexOf("=") + 1);
  const value = args[i + 1];
  if (value === undefined) fail(`${name} needs a value`);
  return value;
}

/** Arguments that are not options or option values. */
function positionals(args: string[], withValues: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith("--")) {
      if (withValues.includes(a)) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

function fail(message: string): never {
  process.stderr.write(`ferry: ${message}\n`);
  process.exit(2);
}

async function loadConfig(rest: string[]): Promise<{ config: Config; path?: string }> {
  const path = optionValue(rest, "--config") ?? process.env.FERRY_CONFIG;
  try {
    return { config: await loadConfigFile(path), path };
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
}

const print = (line: string) => process.stdout.write(`${line}\n`);

async function main(args: string[]): Promise<number | undefined> {
  const command = args[0] ?? "help";
  const rest = args.slice(1);
  if (COMMAND_HELP[command] && (rest.includes("--help") || rest.includes("-h"))) {
    process.stdout.write(COMMAND_HELP[command]!);
    return 0;
  }
  switch (command) {
    case "version":
    case "--version":
      print(`ferry ${pkg.version} (bun ${Bun.version})`);
      return 0;
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return 0;
    case "serve": {
      const { config, path } = await loadConfig(rest);
      let server;
      try {
        server = await serve(config);
      } catch (error) {
        if (error instanceof ConfigError) fail(error.message);
        throw error;
      }
      const log = createLogger(config.log.level);
      const shutdown = () => server.stop().then(() => process.exit(0));
      process.on("SIGTERM", shutdown);
      process.on("SIGINT", shutdown);
      process.on("SIGHUP", () => {
        loadConfigFile(path)
          .then((next) => server.reload(next))
          .catch((error: Error) => log.error({ error: error.message }, "config reload failed; still running with the previous config"));
      });
      return undefined; // keep running
    }
    case "check": {
      const { config } = await loadConfig(rest);
      print(`config: ok${optionValue(rest, "--config") ? ` (${optionValue(rest, "--config")})` : ""}\n`);
      const { check } = await import("./cli/check.ts");
      return check(config, print, positionals(rest, ["--config"]));
    }
    case "warm": {
      const { config } = await loadConfig(rest);
      const images = positionals(rest, ["--config", "--mirror", "--platform", "--user", "--concurrency", "--file"]);
      const file = optionValue(rest, "--file");
      if (file) {
        const text = await Bun.file(file).text().catch(() => fail(`cannot read --file ${file}`));
        images.push(...text.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean));
      }
      if (images.length === 0) fail("warm: name at least one image (or --file LIST); see ferry warm --help");
      const host = config.server.hostname === "0.0.0.0" || config.server.hostname === "::" ? "127.0.0.1" : config.server.hostname;
      const user = optionValue(rest, "--user") ?? process.env.FERRY_WARM_USER;
      const colon = user?.indexOf(":") ?? -1;
      const concurrency = Number(optionValue(rest, "--concurrency") ?? 4);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) fail("--concurrency must be 1..64");
      const tty = process.stderr.isTTY;
      const { warm } = await import("./cli/warm.ts");
      return warm({
        mirror: optionValue(rest, "--mirror") ?? `http://${host}:${config.server.port}`,
        images,
        platform: optionValue(rest, "--platform"),
        username: user && colon > 0 ? user.slice(0, colon) : undefined,
        password: user && colon > 0 ? user.slice(colon + 1) : undefined,
        concurrency,
        out: print,
        progress: (line) => {
          if (tty) process.stderr.write(`\r\x1b[2K${line}`);
        },
      });
    }
    case "prune": {
      const { config } = await loadConfig(rest);
      const maxSizeText = optionValue(rest, "--max-size");
      const olderText = optionValue(rest, "--older-than");
      const maxSize = maxSizeText === undefined ? undefined : parseSize(maxSizeText);
      const olderThanMs = olderText === undefined ? undefined : parseDuration(olderText);
      if (maxSizeText !== undefined && maxSize === undefined) fail(`--max-size: not a size (got "${maxSizeText}")`);
      if (olderText !== undefined && olderThanMs === undefined) fail(`--older-than: not a duration (got "${olderText}")`);
      const s3Orphans = rest.includes("--s3-orphans");
      if (maxSize === undefined && olderThanMs === undefined && !s3Orphans) fail("prune: say what to prune (--max-size, --older-than, --s3-orphans); see ferry prune --help");
      const graceText = optionValue(rest, "--grace") ?? "24h";
      const orphanGraceMs = parseDuration(graceText);
      if (orphanGraceMs === undefined) fail(`--grace: not a duration (got "${graceText}")`);
      const { prune } = await import("./cli/prune.ts");
      return prune(config, { maxSize, olderThanMs, s3Orphans, orphanGraceMs, dryRun: rest.includes("--dry-run"), out: print });
    }
    case "relay": {
      const { parseRelayConfig, RelayConfigError, serveRelay } = await import("../relay/src/serve.ts");
      let relay;
      try {
        const listen = parseListen(optionValue(rest, "--listen") ?? process.env.RELAY_LISTEN ?? ":5001", "--listen");
        const config = parseRelayConfig({ ...process.env, ...(rest.includes("--open") && { RELAY_OPEN: "true" }) });
        const log = createLogger(process.env.FERRY_LOG_LEVEL ?? "info");
        relay = serveRelay({ ...listen, config, onRequest: (entry) => log.info(entry, "relay request") });
        log.info({ listen: relay.url, registries: Object.keys(config.registries), secret: Boolean(config.secret) }, config.secret ? "ferry relay listening" : "ferry relay listening, open to anyone (--open)");
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
      return undefined;
    }
    default:
      fail(`unknown command "${command}" (try ferry --help)`);
  }
}

const code = await main(process.argv.slice(2));
if (code !== undefined) process.exit(code);
