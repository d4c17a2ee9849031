// The load-generating client, run as its own process (`bun bench/lib/client.ts '<json>'`)
// so it never shares an event loop with the in-process upstream of bench/run.ts.
// Prints one JSON line with the result. Every request has a deadline.
//
//   {"mode":"get","url":…,"concurrency":16,"expectBytes":…}   N concurrent GETs, bytes counted
//   {"mode":"pull","base":…,"repo":…,"tag":…[,"proxy":…]}      a docker-style pull of one image
//   {"mode":"pulls","base":…,"images":[{"repo","tag"}…]}        several such pulls at once
import { request, type HttpResponse } from "./http.ts";
import { pull, RegistryClient, type PullResult } from "./registry-client.ts";

export type ClientSpec =
  | { mode: "get"; url: string; concurrency: number; expectBytes?: number; timeoutMs?: number; headers?: Record<string, string>; repeat?: number }
  | { mode: "pull"; base: string; repo: string; tag: string; timeoutMs?: number; proxy?: string }
  | { mode: "pulls"; base: string; images: { repo: string; tag: string }[]; timeoutMs?: number };

/** Concurrent pulls: wall time over all of them, and each one's result. */
export interface PullsResult {
  mode: "pulls";
  wallMs: number;
  pulls: PullResult[];
}

export interface GetResult {
  mode: "get";
  wallMs: number;
  bytes: number;
  /** Bytes per second over the wall time, all clients together. */
  mibPerSec: number;
  requests: { status: number; bytes: number; firstByteMs?: number; totalMs: number; startEpochMs: number; firstByteEpochMs?: number }[];
  errors: string[];
}

export type ClientResult = (GetResult | ({ mode: "pull" } & PullResult) | PullsResult) & { /** CPU seconds (user + system) this client process used. */ cpuS?: number };

/** `concurrency` GETs at once, `repeat` times in a row (default 1); wall time covers all. */
async function runGet(spec: Extract<ClientSpec, { mode: "get" }>): Promise<GetResult> {
  const t0 = performance.now();
  const errors: string[] = [];
  const results: (HttpResponse | undefined)[] = [];
  for (let i = 0; i < Math.min(spec.repeat ?? 1, 100); i++) {
    const batch = await Promise.all(
      Array.from({ length: spec.concurrency }, () =>
        request({ url: spec.url, headers: spec.headers, timeoutMs: spec.timeoutMs ?? 300_000 }).catch((e: Error) => {
          errors.push(e.message);
          return undefined;
        }),
      ),
    );
    results.push(...batch);
  }
  const wallMs = performance.now() - t0;
  const ok = results.filter((r): r is HttpResponse => r !== undefined);
  for (const r of ok) {
    if (r.status !== 200) errors.push(`HTTP ${r.status}`);
    else if (spec.expectBytes !== undefined && r.bytes !== spec.expectBytes) errors.push(`got ${r.bytes} bytes, expected ${spec.expectBytes}`);
  }
  const bytes = ok.reduce((a, r) => a + r.bytes, 0);
  return {
    mode: "get",
    wallMs,
    bytes,
    mibPerSec: bytes / 1048576 / (wallMs / 1000),
    requests: ok.map((r) => ({ status: r.status, bytes: r.bytes, firstByteMs: r.firstByteMs, totalMs: r.totalMs, startEpochMs: r.startEpochMs, firstByteEpochMs: r.firstByteEpochMs })),
    errors,
  };
}

export async function runClient(spec: ClientSpec): Promise<ClientResult> {
  if (spec.mode === "get") return runGet(spec);
  if (spec.mode === "pulls") {
    const t0 = performance.now();
    // A client (and its tokens) per image, as on separate machines.
    const pulls = await Promise.all(spec.images.map((i) => pull(new RegistryClient(spec.base, spec.timeoutMs ?? 600_000), i.repo, i.tag)));
    return { mode: "pulls", wallMs: performance.now() - t0, pulls };
  }
  const client = new RegistryClient(spec.base, spec.timeoutMs ?? 300_000, spec.proxy);
  return { mode: "pull", ...(await pull(client, spec.repo, spec.tag)) };
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? "{}") as ClientSpec;
  try {
    const result = await runClient(spec);
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({ ...result, cpuS: (cpu.user + cpu.system) / 1e6 }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: (error as Error).message }) + "\n");
    process.exit(1);
  }
}
