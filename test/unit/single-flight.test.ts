import { describe, expect, test } from "bun:test";
import { SingleFlight } from "../../src/shared/single-flight.ts";

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
});
