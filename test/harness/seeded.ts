// Seeded randomness for the randomized tests: the same seed gives the same run everywhere,
// so a failure printed with its seed replays with FERRY_SEED=<n>.

/** The run's seed: FERRY_SEED when set (a replay), else a fresh one. */
export function runSeed(): number {
  return Number(process.env.FERRY_SEED ?? Math.floor(Math.random() * 2 ** 31));
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
