// A real S3 API server on loopback for tests of ferry's shared blob tier: npm `s3rver`
// (a Koa app that stores objects as files), run as a separate `node` process on a free
// port with its own temp dir, so it can be killed, SIGSTOPped and restarted like a
// real remote store.
//
// s3rver 3.7 speaks presigned query strings (with expiry), ranged GET, ListObjects(V2)
// and multipart Create/UploadPart/Complete, but checks no signature, completes
// multipart uploads non-atomically and has no AbortMultipartUpload (405) nor
// ListMultipartUploads. It starts in about a second, so tests where speed matters more
// than fidelity use it; tests of the S3 tier itself use Ceph's radosgw (ceph.ts).
// node runs with --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation
// tokens with DES, which OpenSSL 3 (Node >= 17) only has in its legacy provider;
// without it any truncated listing is a 500 InternalError.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { listAllKeys, testS3Client } from "./s3-client.ts";
import { LOOPBACK, freePort, onExit, spawnDaemon, waitFor, waitForPort, type Daemon } from "./proc.ts";

export interface S3Options {
  /** Bucket created at startup (default "ferry-test"). */
  bucket?: string;
  /** Fixed port (default: a free one). */
  port?: number;
  /** Time budget for startup, in ms (default 15 s). */
  startTimeoutMs?: number;
}

export interface S3Server {
  /** http://127.0.0.1:PORT (use path-style addressing). */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly accessKeyId: "S3RVER";
  readonly secretAccessKey: "S3RVER";
  readonly region: "us-east-1";
  /** s3rver's data dir: <dir>/<bucket>/… holds the objects. */
  readonly dir: string;
  /** PID of the current s3rver process (changes after start()). */
  readonly pid: number;
  /** An SDK client for the test itself (path style, credentials set). */
  client(): S3Client;
  /** Object keys in the bucket (all of them, or under a prefix), sorted. */
  listKeys(prefix?: string): Promise<string[]>;
  /** SIGTERM (SIGKILL after a grace period); the data dir is kept so start() works again. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** SIGSTOP: the port still accepts connections (kernel backlog) but nothing answers. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** Starts again on the same port and dir after stop()/kill(); no-op when running. */
  start(): Promise<void>;
  /** Stops it and removes its temp dir (also done at process exit). */
  dispose(): Promise<void>;
  logTail(bytes?: number): string;
}

const REPO_ROOT = resolve(import.meta.dir, "../..");
const S3RVER_MODULE = join(REPO_ROOT, "node_modules", "s3rver");

/** The node entry point: s3rver's own CLI, with the bucket made at startup. */
const WRAPPER = String.raw`
"use strict";
const [moduleDir, directory, address, port, bucket] = process.argv.slice(2);
const S3rver = require(moduleDir);
const server = new S3rver({
  directory, address, port: Number(port), silent: false, vhostBuckets: false,
  configureBuckets: [{ name: bucket, configs: [] }],
});
server.run().then(
  ({ address, port }) => console.log("S3rver listening on %s:%d", address, port),
  (err) => { console.error(err); process.exit(1); },
);
`;

export async function startS3(opts: S3Options = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? "ferry-test";
  const port = opts.port ?? (await freePort());
  const root = mkdtempSync(join(tmpdir(), "ferry-s3-"));
  const unregisterRm = onExit(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, "data");
  mkdirSync(dir);
  const wrapperPath = join(root, "s3rver-main.cjs");
  writeFileSync(wrapperPath, WRAPPER);
  const logFile = join(root, "s3rver.log");
  const endpoint = `http://${LOOPBACK}:${port}`;
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;

  let daemon: Daemon | undefined;
  let sdk: S3Client | undefined;

  const client = () => (sdk ??= testS3Client(endpoint, "S3RVER", "S3RVER"));


  async function start(): Promise<void> {
    if (daemon?.alive()) return;
    const argv = ["node", "--openssl-legacy-provider", wrapperPath, S3RVER_MODULE, dir, LOOPBACK, String(port), bucket];
    const d = spawnDaemon(argv, { logFile });
    daemon = d;
    let exited = false;
    void d.exited.then(() => (exited = true));
    try {
      await waitForPort(port, { timeoutMs: startTimeoutMs, what: `s3rver on ${port}`, onTimeout: () => d.logTail() });
      // The port opens before the bucket exists only in theory (configureBuckets runs
      // first), but check that the bucket answers so callers never race it.
      await waitFor(
        async () => {
          if (exited) throw new Error("s3rver exited during startup");
          await client().send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1 }));
          return true;
        },
        { timeoutMs: startTimeoutMs, what: `s3rver bucket ${bucket}`, onTimeout: () => d.logTail() },
      );
    } catch (e) {
      await d.stop(500);
      throw e;
    }
  }

  async function stop(): Promise<void> {
    await daemon?.stop(3000);
  }

  async function kill(): Promise<void> {
    await daemon?.kill();
  }

  function signal(sig: "SIGSTOP" | "SIGCONT"): void {
    if (daemon?.alive()) process.kill(daemon.pid, sig);
  }

  await start();

  return {
    endpoint,
    port,
    bucket,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    region: "us-east-1",
    dir,
    get pid() {
      return daemon?.pid ?? -1;
    },
    client,
    listKeys: (prefix?: string) => listAllKeys(client(), bucket, prefix),
    stop,
    kill,
    freeze: () => signal("SIGSTOP"),
    thaw: () => signal("SIGCONT"),
    start,
    async dispose() {
      signal("SIGCONT");
      sdk?.destroy();
      sdk = undefined;
      await stop();
      rmSync(root, { recursive: true, force: true });
      unregisterRm();
    },
    logTail: (bytes?: number) => daemon?.logTail(bytes) ?? "",
  };
}
