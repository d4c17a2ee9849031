// The access log: one JSON line per request, in the shape pino writes every other line
// ({"level":30,"time":…,"service":"ferry",…,"msg":"request"}), so one parser reads both.
//
// Why not pino here: its general serialiser and one write(2) per line weigh on the
// cached-manifest path (bench/, scenario 2). The fields are few and known, so the line is built
// directly, and lines are written in batches: once per event-loop turn (setImmediate),
// so a quiet server logs at once and a busy one writes many lines per syscall. What is
// pending is written on exit.
import { writeSync } from "node:fs";
import pino from "pino";

export interface AccessEntry {
  id: string;
  method: string;
  path: string;
  status: number;
  bytes?: number;
  ms: number;
  cache?: string;
  registry?: string;
}

/** Pending bytes beyond which a turn's lines are written at once. */
const FLUSH_AT = 64 * 1024;
/** A stuck stdout (full pipe) must not grow memory without bound: older lines are dropped. */
const MAX_PENDING = 4 * 1024 * 1024;

/** One JSON line for an entry (pure; fields left undefined are left out, as pino does). */
export function formatAccessLine(e: AccessEntry, time: Date): string {
  let line = `{"level":30,"time":"${time.toISOString()}","service":"ferry","id":${JSON.stringify(e.id)},"method":${JSON.stringify(e.method)},"path":${JSON.stringify(e.path)},"status":${e.status}`;
  if (e.bytes !== undefined && Number.isFinite(e.bytes)) line += `,"bytes":${e.bytes}`;
  line += `,"ms":${e.ms}`;
  if (e.cache !== undefined) line += `,"cache":${JSON.stringify(e.cache)}`;
  if (e.registry !== undefined) line += `,"registry":${JSON.stringify(e.registry)}`;
  return line + `,"msg":"request"}\n`;
}

/** Batched writes of lines to a file descriptor (stdout by default), shared by every generation. */
class LineWriter {
  private pending = "";
  private scheduled = false;
  private exitHooked = false;

  constructor(private readonly fd: number) {}

  write(line: string): void {
    this.pending += line;
    if (!this.exitHooked) {
      this.exitHooked = true;
      process.on("exit", () => this.flush());
    }
    if (this.pending.length >= FLUSH_AT) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (!this.pending) return;
    const data = Buffer.from(this.pending);
    this.pending = "";
    let offset = 0;
    try {
      while (offset < data.byteLength) offset += writeSync(this.fd, data, offset);
    } catch (error) {
      // EAGAIN on a non-blocking pipe: keep the rest for a later turn. Anything else
      // (stdout closed) drops the lines; the requests themselves are unaffected.
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") {
        this.pending = data.subarray(offset).toString() + this.pending;
        if (this.pending.length > MAX_PENDING) this.pending = this.pending.slice(this.pending.indexOf("\n", this.pending.length - MAX_PENDING) + 1);
        if (!this.scheduled) {
          this.scheduled = true;
          setTimeout(() => this.flush(), 10);
        }
      }
    }
  }
}

const stdoutWriter = new LineWriter(1);

export interface AccessLog {
  readonly enabled: boolean;
  record(entry: AccessEntry): void;
}

/** The access log at a logger level: lines are "info", so "warn" and above turn it off. */
export function createAccessLog(level: string): AccessLog {
  const enabled = (pino.levels.values[level] ?? 30) <= 30;
  return {
    enabled,
    record(entry) {
      if (enabled) stdoutWriter.write(formatAccessLine(entry, new Date()));
    },
  };
}
