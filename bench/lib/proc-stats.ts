// CPU of the processes under test, read from /proc (Linux, USER_HZ 100: 10 ms ticks).
import { readFileSync } from "node:fs";

/** utime + stime in seconds from a /proc stat line (fields after the command name). */
function statCpu(path: string): number | undefined {
  try {
    const stat = readFileSync(path, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number | undefined {
  return statCpu(`/proc/${pid}/stat`);
}

/**
 * CPU seconds of the process's main thread only. For Bun that thread is the event loop
 * (JS, fetch bodies, socket writes); what the thread pool and GC helpers do is not in it.
 */
export function mainThreadCpuSeconds(pid: number): number | undefined {
  return statCpu(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * Waits until the process has stopped working (less than one tick of CPU over
 * `quietMs`), bounded by `maxMs`, and returns its CPU then. distribution stores a
 * proxied blob from a second upstream GET in the background, after the client's GET
 * ended: a window that closes at the client's last byte misses that work.
 */
export async function settledCpu(pid: number, quietMs = 250, maxMs = 15_000): Promise<{ process?: number; mainThread?: number }> {
  const t0 = performance.now();
  let last = cpuSeconds(pid);
  for (let i = 0; last !== undefined && performance.now() - t0 < maxMs && i < maxMs / quietMs + 1; i++) {
    await Bun.sleep(quietMs);
    const now = cpuSeconds(pid);
    if (now === undefined || now - last < 0.01) break;
    last = now;
  }
  return { process: cpuSeconds(pid) ?? last, mainThread: mainThreadCpuSeconds(pid) };
}
