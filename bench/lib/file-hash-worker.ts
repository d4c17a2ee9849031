// Worker side of bench/lib/bun-relay.ts's "pipedhash" mode: hashes a file that is being
// written natively on the main thread, from the page cache, right behind the write, and
// reports how far it has hashed (so the main thread never sends unhashed bytes' last one).
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

declare const self: Worker;

const CHUNK = 4 * 1024 * 1024;

self.onmessage = (event: MessageEvent<{ path: string; size: number }>) => {
  const { path, size } = event.data;
  const fd = openSync(path, "r");
  const hasher = new Bun.CryptoHasher("sha256");
  const buffer = new Uint8Array(CHUNK);
  let hashed = 0;
  const deadline = Date.now() + 600_000;
  while (hashed < size && Date.now() < deadline) {
    const available = fstatSync(fd).size;
    if (available <= hashed) {
      Bun.sleepSync(1);
      continue;
    }
    const n = readSync(fd, buffer, 0, Math.min(CHUNK, available - hashed), hashed);
    hasher.update(buffer.subarray(0, n));
    hashed += n;
    self.postMessage({ hashed });
  }
  closeSync(fd);
  self.postMessage({ hashed, digest: hasher.digest("hex") });
};
