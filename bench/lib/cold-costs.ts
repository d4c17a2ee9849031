// The obligatory work of a cold blob byte, each part alone on one thread of this machine:
// what any mirror that hashes and stores every byte pays, against which a data path is read.
import { closeSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MiB = 1024 * 1024;

export interface ColdCosts {
  /** CPU seconds per GiB (user + system of this process). */
  sha256: number;
  pageCacheWrite: number;
  preadFresh: number;
  copyIntoBatch: number;
}

function cpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Measures each part over `totalMiB` of random bytes in 1 MiB steps (fetch-sized 64 KiB pieces for the copy). */
export function measureColdCosts(totalMiB = 256): ColdCosts {
  const data = new Uint8Array(totalMiB * MiB);
  for (let at = 0; at < data.byteLength; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536));
  const path = join(tmpdir(), `ferry-bench-cold-costs-${process.pid}`);
  const perGiB = (seconds: number) => seconds / (totalMiB / 1024);
  const timed = (work: () => void) => {
    const t = cpuS();
    work();
    return perGiB(cpuS() - t);
  };
  try {
    const sha256 = timed(() => {
      const hasher = new Bun.CryptoHasher("sha256");
      for (let at = 0; at < data.byteLength; at += MiB) hasher.update(data.subarray(at, at + MiB));
      hasher.digest("hex");
    });
    const fd = openSync(path, "w+");
    const pageCacheWrite = timed(() => {
      for (let at = 0; at < data.byteLength; at += MiB) writeSync(fd, data, at, MiB, at);
    });
    const preadFresh = timed(() => {
      for (let at = 0; at < data.byteLength; at += MiB) readSync(fd, Buffer.allocUnsafe(MiB), 0, MiB, at);
    });
    closeSync(fd);
    const copyIntoBatch = timed(() => {
      let batch = new Uint8Array(MiB);
      for (let at = 0; at < data.byteLength; at += 65536) {
        if (at % MiB === 0) batch = new Uint8Array(MiB);
        batch.set(data.subarray(at, at + 65536), at % MiB);
      }
    });
    return { sha256, pageCacheWrite, preadFresh, copyIntoBatch };
  } finally {
    rmSync(path, { force: true });
  }
}
