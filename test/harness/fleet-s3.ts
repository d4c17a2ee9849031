// The S3 server the fleet-wide tests run against, behind one small shape, so a real
// S3 implementation (Ceph radosgw, issue 17; harness on branch s3ceph) replaces s3rver
// here without touching the tests. Until then: s3rver (test/harness/s3.ts), which
// checks no signature and completes multipart uploads non-atomically.
import { startS3, type S3Server } from "./s3.ts";

export interface FleetS3 {
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Which implementation this is, for the test's printed figures. */
  readonly kind: string;
  /** Stops it (the port refuses connections); start() brings it back with its data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  listKeys(prefix?: string): Promise<string[]>;
  /** Multipart uploads neither completed nor aborted. */
  pendingUploads(): Promise<number>;
  dispose(): Promise<void>;
}

export async function startFleetS3(bucket: string): Promise<FleetS3> {
  const s3: S3Server = await startS3({ bucket });
  return {
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    region: s3.region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    kind: "s3rver",
    stop: () => s3.stop(),
    start: () => s3.start(),
    listKeys: (prefix) => s3.listKeys(prefix),
    pendingUploads: async () => s3.pendingUploads().length,
    dispose: () => s3.dispose(),
  };
}

/** The [s3] block of a replica's config for this server. */
export function s3Config(s3: FleetS3, prefix: string): string {
  return `[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\nregion = "${s3.region}"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\nforce_path_style = true\nprefix = "${prefix}"`;
}
