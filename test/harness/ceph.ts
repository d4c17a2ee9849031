// A real S3 for the tests: Debian's Ceph on loopback (one ceph-mon, one ceph-osd on
// `memstore`, radosgw; no mgr), in its own temp dir with its own ceph.conf, fsid and
// keyrings. Unlike s3rver it checks SigV4 signatures and presigned expiry, keeps a
// multipart object invisible until CompleteMultipartUpload, aborts uploads for real and
// lists them (ListMultipartUploads), and enforces the 5 MiB minimum part size.
//
// Every daemon runs in the foreground (-f) under spawnDaemon, so it is stopped by PID
// and dies with the test process; the temp dir is removed by stop() or at exit.
// radosgw alone can be stopped, killed, frozen and started again (an S3 outage) while
// the mon and the OSD keep the objects.
//
// Quirks ferry has to live with (as with many S3-compatible stores):
// CompleteMultipartUpload answers an empty ETag, and streamed uploads need
// requestChecksumCalculation "WHEN_REQUIRED" (no aws-chunked CRC32 trailers).

import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import { listAllKeys, testS3Client } from "./s3-client.ts";
import { LOOPBACK, freePort, onExit, run, spawnDaemon, tailFile, waitFor, type Daemon } from "./proc.ts";

export interface CephOptions {
  /** Bucket created at startup (default "ferry-test"). */
  bucket?: string;
  /** What the OSD offers, in bytes: memstore keeps everything in RAM (default 1 GiB). */
  storeBytes?: number;
  /** Time budget for startup, in ms (default 30 s). */
  startTimeoutMs?: number;
}

export interface PendingUpload {
  key: string;
  uploadId: string;
  initiated: Date;
}

export interface CephS3 {
  /** http://127.0.0.1:PORT, radosgw (use path-style addressing). */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: "us-east-1";
  /** The cluster's temp dir (ceph.conf, keyring, logs). */
  readonly dir: string;
  /** PID of the current radosgw (changes after startGateway()). */
  readonly gatewayPid: number;
  /** An SDK client for the test itself (path style, credentials set, no retries). */
  client(): S3Client;
  /** Object keys in the bucket (all, or under a prefix), sorted. */
  listKeys(prefix?: string): Promise<string[]>;
  /** Multipart uploads neither completed nor aborted (ListMultipartUploads), oldest first. */
  pendingUploads(prefix?: string): Promise<PendingUpload[]>;
  /** SIGTERM radosgw (SIGKILL after a grace period): connections are refused, data stays. */
  stopGateway(): Promise<void>;
  /** SIGKILL radosgw, as a crash would. */
  killGateway(): Promise<void>;
  /** SIGSTOP radosgw: the port still accepts connections but nothing answers. */
  freezeGateway(): void;
  /** SIGCONT after freezeGateway(). */
  thawGateway(): void;
  /** Starts radosgw again on the same port; no-op when it runs. */
  startGateway(): Promise<void>;
  /** Stops every daemon by PID and removes the temp dir (also done at exit). */
  stop(): Promise<void>;
  /** The end of every daemon's log, for error messages. */
  logTail(bytes?: number): string;
}

const CLI_TIMEOUT_MS = 20_000;

export async function startCeph(opts: CephOptions = {}): Promise<CephS3> {
  const bucket = opts.bucket ?? "ferry-test";
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const [monPort, port] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "ferry-ceph-"));
  const unregisterRm = onExit(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ["mon", "osd/0", "run", "log"]) mkdirSync(join(dir, sub), { recursive: true });
  const conf = join(dir, "ceph.conf");
  const keyring = join(dir, "keyring");
  const fsid = randomUUID();
  const endpoint = `http://${LOOPBACK}:${port}`;
  const accessKeyId = `FERRY${randomUUID().replace(/-/g, "").slice(0, 15).toUpperCase()}`;
  const secretAccessKey = randomUUID().replace(/-/g, "") + randomUUID().replace(/-/g, "").slice(0, 8);
  writeFileSync(
    conf,
    [
      "[global]",
      `fsid = ${fsid}`,
      `mon host = v2:${LOOPBACK}:${monPort}`,
      "mon initial members = a",
      `public addr = ${LOOPBACK}`,
      "ms bind ipv6 = false",
      "auth cluster required = cephx",
      "auth service required = cephx",
      "auth client required = cephx",
      `keyring = ${keyring}`,
      `run dir = ${dir}/run`,
      `admin socket = ${dir}/run/$name.asok`,
      `log file = ${dir}/log/$name.log`,
      `mon cluster log file = ${dir}/log/$cluster.$channel.log`, // else /var/log/ceph
      `pid file = ${dir}/run/$name.pid`,
      // One OSD: pools of size 1, few PGs, no warnings that would stop a single-node mon.
      "osd pool default size = 1",
      "osd pool default min size = 1",
      "osd pool default pg num = 8",
      "osd pool default pgp num = 8",
      "osd crush chooseleaf type = 0",
      "mon allow pool size one = true",
      "mon warn on pool no redundancy = false",
      // The mon refuses to run below 5 % free disk by default; a test host may be fuller.
      "mon data avail warn = 1",
      "mon data avail crit = 0",
      `mon data = ${dir}/mon/$id`,
      `osd data = ${dir}/osd/$id`,
      // Commit map changes (each pool radosgw creates) at once instead of batching for 1 s.
      "paxos propose interval = 0.01",
      "paxos min wait = 0.001",
      "osd objectstore = memstore",
      `memstore device bytes = ${opts.storeBytes ?? 1024 ** 3}`,
      `rgw frontends = beast endpoint=${LOOPBACK}:${port}`,
      "rgw thread pool size = 32",
      // The lifecycle worker runs 00:00-06:00 UTC by default and holds its shard locks while it
      // runs; a PutBucketLifecycle then waits for the lock in 5 s sleeps (rgw_lc.cc
      // guard_lc_modify), past the client's timeout. No test needs rules enforced, only stored.
      "rgw enable lc threads = false",
      `rgw data = ${dir}/rgw`,
      "",
    ].join("\n"),
  );

  const daemons: { mon?: Daemon; osd?: Daemon; rgw?: Daemon } = {};
  const logTail = (bytes = 3000) => {
    const logs = (() => {
      try {
        return readdirSync(join(dir, "log"));
      } catch {
        return [];
      }
    })();
    return logs.map((f) => `--- ${f}\n${tailFile(join(dir, "log", f), bytes)}`).join("\n");
  };
  const ceph = (args: string[]) => run(args, { timeoutMs: CLI_TIMEOUT_MS });
  const spawn = (name: string, argv: string[]) => spawnDaemon(argv, { logFile: join(dir, "log", `${name}.stdout`) });

  let sdk: S3Client | undefined;
  const client = () => (sdk ??= testS3Client(endpoint, accessKeyId, secretAccessKey));


  async function startGateway(): Promise<void> {
    if (daemons.rgw?.alive()) return;
    const rgw = spawn("rgw", ["radosgw", "-f", "-c", conf, "-n", "client.rgw"]);
    daemons.rgw = rgw;
    await waitFor(
      async () => {
        if (!rgw.alive()) throw new Error("radosgw exited");
        return (await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) })).status === 200;
      },
      { timeoutMs: startTimeoutMs, intervalMs: 100, what: `radosgw on ${port}`, onTimeout: logTail },
    );
  }

  async function stopAll(): Promise<void> {
    sdk?.destroy();
    sdk = undefined;
    // The data lives in memory and in this temp dir, which goes next: no clean shutdown needed.
    await Promise.all([daemons.rgw?.kill(), daemons.osd?.kill(), daemons.mon?.kill()]);
    rmSync(dir, { recursive: true, force: true });
    unregisterRm();
  }

  try {
    // Keys for every daemon go into the mon's keyring at mkfs, so no `ceph auth add` later.
    await ceph(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]);
    await ceph(["ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"]);
    await ceph(["ceph-authtool", keyring, "--gen-key", "-n", "osd.0", "--cap", "mon", "allow profile osd", "--cap", "osd", "allow *"]);
    await ceph(["ceph-authtool", keyring, "--gen-key", "-n", "client.rgw", "--cap", "mon", "allow rw", "--cap", "osd", "allow rwx"]);
    await ceph(["monmaptool", "--create", "--addv", "a", `[v2:${LOOPBACK}:${monPort}]`, "--fsid", fsid, join(dir, "monmap")]);
    await ceph(["ceph-mon", "--mkfs", "-i", "a", "-c", conf, "--monmap", join(dir, "monmap"), "--keyring", keyring]);
    daemons.mon = spawn("mon", ["ceph-mon", "-f", "-i", "a", "-c", conf]);
    const osdUuid = randomUUID();
    // Registers osd.0 (waits for the mon's quorum); memstore's mkfs is instant.
    await ceph(["ceph", "-c", conf, "--connect-timeout", "15", "osd", "new", osdUuid, "0"]);
    await ceph(["ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osdUuid]);
    daemons.osd = spawn("osd", ["ceph-osd", "-f", "-c", conf, "-i", "0"]);
    // radosgw creates its pools itself once the OSD is up.
    await startGateway();
    await ceph(["radosgw-admin", "-c", conf, "user", "create", "--uid", "ferry", "--display-name", "ferry tests", "--access-key", accessKeyId, "--secret-key", secretAccessKey]);
    // A fresh user's keys can take a moment to reach the gateway's cache.
    await waitFor(
      async () => {
        await client().send(new CreateBucketCommand({ Bucket: bucket }));
        return true;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: `bucket ${bucket} on radosgw`, onTimeout: logTail },
    );
  } catch (error) {
    const tail = logTail();
    await stopAll();
    throw new Error(`ceph did not start: ${(error as Error).message}\n${tail}`);
  }

  const signalGateway = (sig: "SIGSTOP" | "SIGCONT") => {
    if (daemons.rgw?.alive()) process.kill(daemons.rgw.pid, sig);
  };

  return {
    endpoint,
    port,
    bucket,
    accessKeyId,
    secretAccessKey,
    region: "us-east-1",
    dir,
    get gatewayPid() {
      return daemons.rgw?.pid ?? -1;
    },
    client,
    listKeys: (prefix?: string) => listAllKeys(client(), bucket, prefix),
    async pendingUploads(prefix?: string) {
      const uploads: PendingUpload[] = [];
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const out = await client().send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
        for (const u of out.Uploads ?? []) uploads.push({ key: u.Key ?? "", uploadId: u.UploadId ?? "", initiated: u.Initiated ?? new Date(0) });
        if (!out.IsTruncated) break;
        keyMarker = out.NextKeyMarker;
        uploadIdMarker = out.NextUploadIdMarker;
      }
      return uploads.sort((a, b) => a.initiated.getTime() - b.initiated.getTime());
    },
    stopGateway: async () => {
      signalGateway("SIGCONT");
      await daemons.rgw?.stop(3000);
    },
    killGateway: async () => {
      await daemons.rgw?.kill();
    },
    freezeGateway: () => signalGateway("SIGSTOP"),
    thawGateway: () => signalGateway("SIGCONT"),
    startGateway,
    stop: stopAll,
    logTail,
  };
}
