// A cached download (registry/blob-download.ts) on both data paths, from a source whose
// bodies break, end early, go silent, are refused or lie on a seeded plan, with readers
// of random ranges, some slow: every reader gets its exact range or a failed stream, a
// stream to the blob's end never completes unverified, and the store holds the blob
// exactly when the download is done. Replay a failure with FERRY_SEED=<seed printed>.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFileWriter } from "../../src/cache/file-writer.ts";
import { FsBlobStore } from "../../src/cache/fs-blob-store.ts";
import { digestOf } from "../../src/protocol/digest.ts";
import { MAX_DOWNLOAD_ATTEMPTS } from "../../src/registry/blob-download.ts";
import { prng, runSeed } from "../harness/seeded.ts";
import { BREAKS, PlannedSource } from "./support/planned-source.ts";
import { startDownload } from "./support/scripted-source.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MiB = 1024 * 1024;

/** A reader's bytes, and whether its stream failed. */
async function read(stream: ReadableStream<Uint8Array>, slow: boolean): Promise<{ bytes: Uint8Array; failed: boolean }> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(new Uint8Array(value)); // a copy: a lent chunk is only ours until the next read (and a Buffer's slice() is a view)
      if (slow) await Bun.sleep(1);
    }
    return { bytes: Buffer.concat(parts), failed: false };
  } catch {
    return { bytes: Buffer.concat(parts), failed: true };
  }
}

for (const path of ["chunks through JS", "piped, hashed on the worker"]) {
  describe(`BlobDownload, seeded (${path})`, () => {
    test("faults × readers: exact ranges or failed streams; the store holds the blob only when verified", async () => {
      const piped = path.startsWith("piped");
      if (piped) expect(await startFileWriter()).toBe(true);
      const seed = runSeed();
      console.log(`blob-download seed ${seed} (${path}; replay: FERRY_SEED=${seed})`);
      const random = prng(seed);
      for (let run = 0; run < 20; run++) {
        const dir = mkdtempSync(join(tmpdir(), "ferry-download-seeded-"));
        dirs.push(dir);
        const store = new FsBlobStore(dir, { hashOnWorker: piped });
        await store.init();
        const size = 1 + Math.floor(random() * 2.5 * MiB);
        const blob = new Uint8Array(size);
        for (let i = 0; i < size; i += 4096) blob[i] = Math.floor(random() * 256);
        const digest = digestOf(blob);
        const key = { registry: "docker.io", digest };
        const breaks = Math.floor(random() * (MAX_DOWNLOAD_ATTEMPTS + 1));
        const plan = Array.from({ length: breaks }, () => ({ kind: BREAKS[Math.floor(random() * BREAKS.length)]!, after: Math.floor(random() * size) }));
        const ranges = Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
          if (random() < 0.4) return { start: 0, end: size, slow: random() < 0.3 };
          const start = Math.floor(random() * size);
          return { start, end: random() < 0.5 ? size : start + 1 + Math.floor(random() * (size - start)), slow: random() < 0.3 };
        });
        const use = random() < 0.5 ? ("lent" as const) : ("owned" as const);
        const what = `seed ${seed} run ${run}: size ${size}, ${use} readers ${JSON.stringify(ranges)}, plan ${JSON.stringify(plan)}`;
        const source = new PlannedSource(blob, plan, random, 300, 64 * 1024); // 300 ms of silence is a stall: well above a loaded machine's pauses
        const download = startDownload(store, digest, source);
        const ready = await download.ready.then(
          () => true,
          () => false,
        );
        if (!ready) {
          // Only a refused first answer fails before the size is known; nothing is stored.
          expect(plan[0]?.kind, what).toBe("refused");
          await download.finished.catch(() => {});
          expect(await store.stat(key), what).toBeUndefined();
          continue;
        }
        const results = await Promise.all(
          ranges.map(async (r) => {
            const stream = await download.readerWithFirstBytes(r.start, r.end, use).catch(() => undefined);
            return stream ? read(stream, r.slow) : { bytes: new Uint8Array(), failed: true };
          }),
        );
        await download.finished.catch(() => {});
        // A body lied if it was corrupt and sent any byte.
        const lied = source.opens.some((offset, n) => plan[n]?.kind === "corrupt" && Math.min(plan[n]!.after, size - offset) > 0);
        for (const [i, r] of ranges.entries()) {
          const expected = blob.subarray(r.start, r.end);
          const { bytes, failed } = results[i]!;
          const reachesEnd = r.end === size;
          const seen = `${what}: reader ${i} got ${bytes.byteLength} of ${expected.byteLength} bytes${failed ? ", failed" : ""}; download ${download.state}, opens ${source.opens}`;
          if (!failed) {
            if (reachesEnd) expect(download.state, seen).toBe("done");
            if (reachesEnd || !lied) expect(Buffer.from(bytes).equals(Buffer.from(expected)), seen).toBe(true);
          } else {
            // The blob's last byte is held until verified; a range that ends sooner may have had
            // all its bytes when the download failed.
            if (reachesEnd) expect(bytes.byteLength, seen).toBeLessThan(expected.byteLength);
            else expect(bytes.byteLength, seen).toBeLessThanOrEqual(expected.byteLength);
            if (!lied) expect(Buffer.from(bytes).equals(Buffer.from(expected.subarray(0, bytes.byteLength))), seen).toBe(true);
          }
        }
        // The store holds the blob, byte for byte, exactly when the download is done; no temp file stays.
        const stored = await store.stat(key);
        if (download.state === "done") expect(stored && Buffer.from(readFileSync(stored.path)).equals(Buffer.from(blob)), what).toBe(true);
        else expect({ state: download.state, stored }, what).toEqual({ state: "failed", stored: undefined });
        expect(readdirSync(join(dir, "tmp")).filter((n) => !n.startsWith(".")), `${what}: temp files`).toEqual([]);
        if (lied) expect(download.state, `${what}: lied, opens ${source.opens}`).toBe("failed");
        // Attempts are bounded and each resume asks from a byte at or past the last one.
        expect(source.opens.length, what).toBeLessThanOrEqual(MAX_DOWNLOAD_ATTEMPTS);
        for (let i = 1; i < source.opens.length; i++) expect(source.opens[i]!, what).toBeGreaterThanOrEqual(source.opens[i - 1]!);
        if (breaks < MAX_DOWNLOAD_ATTEMPTS && !lied) expect(download.state, `${what}: opens ${source.opens}`).toBe("done");
      }
    }, 120_000);
  });
}
