// Worker side of bench/lib/bun-relay.ts's "worker" mode: hashes and writes one blob's
// bytes, sent in batches of about 1 MiB, and answers the digest when told the body ended.
import { closeSync, openSync, writeSync } from "node:fs";

declare const self: Worker;

let fd: number | undefined;
let offset = 0;
const hasher = new Bun.CryptoHasher("sha256");

self.onmessage = (event: MessageEvent<{ open: string } | { batch: ArrayBuffer; length: number } | { end: true }>) => {
  const m = event.data;
  if ("open" in m) fd = openSync(m.open, "w");
  else if ("batch" in m) {
    const bytes = new Uint8Array(m.batch, 0, m.length);
    hasher.update(bytes);
    for (let written = 0; written < bytes.byteLength; ) written += writeSync(fd!, bytes, written, bytes.byteLength - written, offset + written);
    offset += bytes.byteLength;
  } else {
    closeSync(fd!);
    self.postMessage({ digest: hasher.digest("hex") });
  }
};
