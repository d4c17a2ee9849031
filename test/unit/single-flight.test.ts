import { describe, expect, test } from "bun:test";
import { SingleFlight } from "../../src/shared/single-flight.ts";

/** `p`, or a rejection saying it is still waiting after `ms` (a bound, so a wait that never ends fails here). */
function within<T>(p: Promise<T>, ms = 2_000): Promise<T> {
  let timer: Timer | undefined;
  const bound = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms)));
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

describe("SingleFlight", () => {
  test("concurrent callers of one key share one run; the key is free again once it settles", async () => {
    const flight = new SingleFlight<number>();
    let runs = 0;
    let finish!: (n: number) => void;
    const work = () => (runs++, new Promise<number>((r) => (finish = r)));
    const both = Promise.all([flight.run("k", work), flight.run("k", work)]);
    expect(flight.size).toBe(1);
    finish(7);
    expect(await both).toEqual([7, 7]);
    expect(flight.size).toBe(0);
    const again = flight.run("k", work);
    finish(8);
    expect(await again).toBe(8);
    expect(runs).toBe(2);
  });

  test("a failure reaches every caller and is not kept; a synchronous throw is a rejection", async () => {
    const flight = new SingleFlight<string>();
    await expect(flight.run("k", async () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    await expect(
      flight.run("k", () => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    expect(flight.size).toBe(0);
    expect(await flight.run("k", async () => "ok")).toBe("ok");
  });

  test("a caller's signal ends its own wait only; the work's signal aborts once no caller is left; a later caller starts anew", async () => {
    const flight = new SingleFlight<string>();
    const signals: AbortSignal[] = [];
    const finishes: ((v: string) => void)[] = [];
    const work = (signal: AbortSignal) => (signals.push(signal), new Promise<string>((r) => finishes.push(r)));
    const first = new AbortController();
    const second = new AbortController();
    const a = flight.run("k", work, first.signal);
    const b = flight.run("k", work, second.signal);
    first.abort(new Error("first caller's deadline"));
    await expect(within(a)).rejects.toThrow("first caller's deadline");
    expect(signals.map((s) => s.aborted)).toEqual([false]); // the second caller still waits
    second.abort(new Error("second caller gone"));
    await expect(within(b)).rejects.toThrow("second caller gone");
    expect(signals.map((s) => s.aborted)).toEqual([true]);
    expect(flight.size).toBe(0);
    const c = flight.run("k", work);
    expect(signals.length).toBe(2);
    finishes[0]!("late");
    finishes[1]!("new");
    expect(await within(c)).toBe("new");
  });

  test("a caller without a signal keeps the work going; a caller already aborted is refused at once", async () => {
    const flight = new SingleFlight<string>();
    let signal!: AbortSignal;
    let finish!: (v: string) => void;
    const work = (s: AbortSignal) => ((signal = s), new Promise<string>((r) => (finish = r)));
    const leaving = new AbortController();
    const staying = flight.run("k", work);
    const gone = flight.run("k", work, leaving.signal);
    leaving.abort(new Error("gone"));
    await expect(within(gone)).rejects.toThrow("gone");
    await expect(within(flight.run("k", work, AbortSignal.abort(new Error("already gone"))))).rejects.toThrow("already gone");
    expect(signal.aborted).toBe(false);
    finish("done");
    expect(await within(staying)).toBe("done");
  });
});
