// Debian's pebble (Let's Encrypt's ACME test server) on loopback. Its directory needs a
// TLS certificate of its own (the package ships none): one is made with openssl, and the
// test hands that to ferry as server.acme.ca_file. Pebble validates HTTP-01 for real: it
// resolves the name (localhost -> 127.0.0.1 via /etc/hosts) and fetches
// http://<name>:<httpPort>/.well-known/acme-challenge/<token>, so httpPort is ferry's
// plain port. Every start generates a new root CA (fetched from the management API).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, run, spawnDaemon, waitFor, type Daemon } from "./proc.ts";

export interface PebbleOptions {
  /** The port pebble's VA connects to for HTTP-01 (ferry's plain listener). */
  httpPort: number;
  /** certificateValidityPeriod, in seconds (pebble's default is 5 years). */
  validitySeconds?: number;
}

export interface Pebble {
  directoryUrl: string;
  /** PEM of the CA that signed pebble's own HTTPS certificate (for ferry's ca_file). */
  directoryCaFile: string;
  /** Issuing root of this run (changes on every start), PEM. */
  root(): Promise<string>;
  /** "Issued certificate serial …" lines in pebble's log: one per finalized order. */
  issued(): number;
  start(): Promise<void>;
  stop(): Promise<void>;
  dispose(): Promise<void>;
  logTail(): string;
}

export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-pebble-"));
  const [listen, management] = [await freePort(), await freePort()];
  const cert = join(dir, "pebble.crt");
  const key = join(dir, "pebble.key");
  await run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]);
  const config = join(dir, "pebble.json");
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listen}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: cert,
        privateKey: key,
        httpPort: opts.httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        ...(opts.validitySeconds ? { certificateValidityPeriod: opts.validitySeconds } : {}),
      },
    }),
  );
  const logFile = join(dir, "pebble.log");
  let daemon: Daemon | undefined;
  const caTls = { ca: await Bun.file(cert).text() };
  const pebble: Pebble = {
    directoryUrl: `https://127.0.0.1:${listen}/dir`,
    directoryCaFile: cert,
    root: async () => (await fetch(`https://127.0.0.1:${management}/roots/0`, { tls: caTls })).text(),
    issued: () => (Bun.file(logFile).size ? require("node:fs").readFileSync(logFile, "utf8") : "").split("\n").filter((l: string) => l.includes("Issued certificate serial")).length,
    start: async () => {
      if (daemon?.alive()) return;
      // NOSLEEP: no random 0-15 s pause before each validation. The validation itself is real.
      daemon = spawnDaemon(["pebble", "-config", config], { logFile, env: { PEBBLE_VA_NOSLEEP: "1" } });
      await waitFor(async () => (await fetch(pebble.directoryUrl, { tls: caTls }).then((r) => r.ok).catch(() => false)) || undefined, { timeoutMs: 10_000, what: "pebble directory" });
    },
    stop: async () => {
      await daemon?.stop();
    },
    dispose: async () => {
      await daemon?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    logTail: () => daemon?.logTail() ?? "",
  };
  await pebble.start();
  return pebble;
}
