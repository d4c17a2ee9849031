// What the two S3 servers of the harness (s3rver in s3.ts, Ceph's radosgw in ceph.ts)
// give a test alike: an SDK client of its own, and the bucket's keys.
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";

/** A path-style client that does not retry, so a test sees the server's first answer. */
export function testS3Client(endpoint: string, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    // No aws-chunked CRC32 trailers: s3rver does not understand them, RGW needs them off for streams.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000, throwOnRequestTimeout: true },
  });
}

/** Every object key in the bucket (or under a prefix), sorted; bounded at 1000 pages. */
export async function listAllKeys(client: S3Client, bucket: string, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of out.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
    if (!out.IsTruncated || !out.NextContinuationToken) break;
    token = out.NextContinuationToken;
  }
  return keys.sort();
}
