// The S3 server the fleet-wide tests run against, behind one small shape: Debian's Ceph
// radosgw (test/harness/ceph.ts), a real S3 implementation that checks SigV4 and keeps a
// multipart object invisible until it is completed.
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { startCeph } from "./ceph.ts";

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
  /** The bytes of an object, read back. */
  read(key: string): Promise<Uint8Array>;
  dispose(): Promise<void>;
}

export async function startFleetS3(bucket: string): Promise<FleetS3> {
  const s3 = await startCeph({ bucket });
  return {
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    region: s3.region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    kind: "ceph-radosgw",
    stop: () => s3.stopGateway(),
    start: () => s3.startGateway(),
    listKeys: (prefix) => s3.listKeys(prefix),
    pendingUploads: async () => (await s3.pendingUploads()).length,
    read: async (key) => {
      const object = await s3.client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
      return object.Body!.transformToByteArray();
    },
    dispose: () => s3.stop(),
  };
}

/** The [s3] block of a replica's config for this server. */
export function s3Config(s3: FleetS3, prefix: string): string {
  return `[s3]\nendpoint = "${s3.endpoint}"\nbucket = "${s3.bucket}"\nregion = "${s3.region}"\naccess_key_id = "${s3.accessKeyId}"\nsecret_access_key = "${s3.secretAccessKey}"\nforce_path_style = true\nprefix = "${prefix}"`;
}
