import { describe, expect, test } from "bun:test";
import pino from "pino";
import { Writable } from "node:stream";
import { formatAccessLine } from "../../src/observe/access-log.ts";

describe("access log lines", () => {
  const time = new Date("2026-11-22T10:00:00.123Z");

  test("same shape and field order as a pino info line", () => {
    let pinoLine = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        pinoLine += chunk.toString();
        done();
      },
    });
    const entry = { id: "abc-1", method: "GET", path: "/v2/library/redis/manifests/7", status: 200, bytes: 1234, ms: 0.4, cache: "hit", registry: "docker.io" };
    pino({ base: { service: "ferry" }, timestamp: () => `,"time":"${time.toISOString()}"` }, sink).info(entry, "request");
    expect(formatAccessLine(entry, time)).toBe(pinoLine);
  });

  test("fields left undefined are left out; client-chosen text is escaped", () => {
    const line = formatAccessLine({ id: "x-2", method: "GET", path: '/v2/a"b\\c\n/manifests/x', status: 404, bytes: undefined, ms: 1.5 }, time);
    expect(line.endsWith("\n")).toBe(true);
    const parsed = JSON.parse(line);
    expect(parsed).toEqual({ level: 30, time: time.toISOString(), service: "ferry", id: "x-2", method: "GET", path: '/v2/a"b\\c\n/manifests/x', status: 404, ms: 1.5, msg: "request" });
  });
});
