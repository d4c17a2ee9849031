// The local tier's usage index (cache/lru-index.ts) against a model, seeded: blob files
// left on disk with random mtimes, then random stores, uses and deletions at random
// points of the background load (at its pauses). Once loaded, the index must hold exactly
// the files on disk, with their sizes, least recently used first: files the load found in
// mtime order, then those used or stored meanwhile in order of use. Replay with FERRY_SEED.
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LruIndex } from "../../src/cache/lru-index.ts";
import { prng, runSeed } from "../harness/seeded.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The index's entries, least recently used first (its eviction order). */
function entriesOf(index: LruIndex): [string, number][] {
  return [...(index as unknown as { entries: Map<string, number> }).entries];
}

test("seeded: stores, uses and deletions during the load leave each file counted once, in order of last use", async () => {
  const seed = runSeed();
  console.log(`lru-index seed ${seed} (replay: FERRY_SEED=${seed})`);
  const random = prng(seed);
  const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(random() * xs.length)];
  for (let run = 0; run < 25; run++) {
    const root = mkdtempSync(join(tmpdir(), "ferry-lru-seeded-"));
    dirs.push(root);
    const subdirs = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, i) => join(root, `d${i}`));
    for (const d of subdirs) mkdirSync(d, { recursive: true });
    const names = Array.from({ length: 30 }, (_, i) => join(pick(subdirs)!, `f${i}`));
    // The model: size of each file on disk, and the order of last use (the walk's mtime order first).
    const onDisk = new Map<string, number>();
    const now = Date.now() / 1000;
    const initial = names.filter(() => random() < 0.6).map((path, i) => ({ path, size: 1 + Math.floor(random() * 1000), mtime: now - 10_000 + i * 7 + Math.floor(random() * 5) }));
    for (const f of initial) {
      writeFileSync(f.path, new Uint8Array(f.size));
      utimesSync(f.path, f.mtime, f.mtime);
      onDisk.set(f.path, f.size);
    }
    const used: string[] = []; // paths used or stored during the load, last use last
    const ops: string[] = [];
    const useNow = (p: string) => {
      const at = used.indexOf(p);
      if (at >= 0) used.splice(at, 1);
      used.push(p);
    };
    const index = new LruIndex(async () => {
      // At each pause of the load: a few random operations, as requests and a prune would do.
      for (let n = Math.floor(random() * 3); n > 0; n--) {
        const p = pick(names)!;
        const r = random();
        if (r < 0.35) {
          const size = 1 + Math.floor(random() * 1000);
          writeFileSync(p, new Uint8Array(size));
          onDisk.set(p, size);
          useNow(p);
          index.add(p, size);
          ops.push(`add ${p} ${size}`);
        } else if (r < 0.75) {
          if (onDisk.has(p)) useNow(p);
          index.touch(p);
          ops.push(`touch ${p}`);
        } else {
          rmSync(p, { force: true });
          onDisk.delete(p);
          const at = used.indexOf(p);
          if (at >= 0) used.splice(at, 1);
          index.remove(p);
          ops.push(`remove ${p}`);
        }
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    });
    await index.load(root);
    const walkOrder = initial.filter((f) => onDisk.has(f.path) && !used.includes(f.path)).sort((a, b) => a.mtime - b.mtime).map((f) => f.path);
    const expected = [...walkOrder, ...used].map((p) => [p, onDisk.get(p)!] as [string, number]);
    const what = `seed ${seed} run ${run}: ops ${ops.join("; ")}`;
    expect(index.complete, what).toBe(true);
    expect(entriesOf(index), what).toEqual(expected);
    expect(index.size, what).toBe([...onDisk.values()].reduce((a, b) => a + b, 0));
  }
}, 60_000);
