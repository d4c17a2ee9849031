// Request-rate measurements with wrk (Debian's), summarised by wrk-json.lua.
import { join } from "node:path";

export interface WrkResult {
  requests: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  errors: number;
  non2xx: number;
}

export async function runWrk(opts: { url: string; connections: number; threads: number; seconds: number; headers?: Record<string, string> }): Promise<WrkResult> {
  const script = join(import.meta.dir, "wrk-json.lua");
  const headers = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n");
  const proc = Bun.spawn(
    ["wrk", "-t", String(opts.threads), "-c", String(opts.connections), "-d", `${opts.seconds}s`, "--timeout", "5s", "-s", script, opts.url],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, WRK_HEADERS: headers } },
  );
  const killer = setTimeout(() => proc.kill("SIGKILL"), (opts.seconds + 30) * 1000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  const line = /WRK_JSON (\{.*\})/.exec(out)?.[1];
  if (code !== 0 || !line) throw new Error(`wrk failed (${code}): ${err}\n${out}`);
  const j = JSON.parse(line) as Record<string, number>;
  const ms = (us: number | undefined) => (us ?? 0) / 1000;
  return {
    requests: j.requests ?? 0,
    rps: j.rps ?? 0,
    p50Ms: ms(j.p50_us),
    p90Ms: ms(j.p90_us),
    p99Ms: ms(j.p99_us),
    p999Ms: ms(j.p999_us),
    maxMs: ms(j.lat_max_us),
    errors: (j.err_connect ?? 0) + (j.err_read ?? 0) + (j.err_write ?? 0) + (j.err_timeout ?? 0),
    non2xx: j.err_status ?? 0,
  };
}
