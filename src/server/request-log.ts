// One log line per request: id, method, path, status, bytes, duration, cache result.
// Handlers annotate the request (cache result, registry) through a WeakMap, so the
// log plugin needs no cooperation from Elysia's context types.
import { Elysia } from "elysia";
import { createAccessLog } from "../observe/access-log.ts";
import type { Logger } from "../observe/logger.ts";
import { Metrics } from "../observe/metrics.ts";
import { requestUrl } from "../protocol/request-url.ts";

export interface RequestNotes {
  id: string;
  started: number;
  cache?: string;
  registry?: string;
}

const notes = new WeakMap<Request, RequestNotes>();
let counter = 0;

export function annotate(request: Request, extra: Partial<Omit<RequestNotes, "id" | "started">>): void {
  const n = notes.get(request);
  if (n) Object.assign(n, extra);
}

export function requestLog(general: Logger, metrics: Metrics) {
  const log = createAccessLog(general.level);
  return new Elysia({ name: "request-log" })
    .onRequest(({ request }) => {
      notes.set(request, { id: `${process.pid.toString(36)}-${(++counter).toString(36)}`, started: performance.now() });
    })
    .onAfterResponse({ as: "global" }, ({ request, set, responseValue }) => {
      const n = notes.get(request);
      if (!n) return;
      const response = responseValue instanceof Response ? responseValue : undefined;
      const status = response?.status ?? (typeof set.status === "number" ? set.status : 200);
      const path = requestUrl(request).pathname;
      const ms = performance.now() - n.started;
      const route = Metrics.routeOf(path);
      metrics.countRequest(route, request.method, status, ms / 1000);
      if (!log.enabled) return;
      const length = response?.headers.get("content-length");
      log.record({ id: n.id, method: request.method, path, status, bytes: length ? Number(length) : undefined, ms: Math.round(ms * 10) / 10, cache: n.cache, registry: n.registry });
    });
}
