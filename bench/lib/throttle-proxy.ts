// A forward HTTP proxy on loopback whose responses share one bandwidth limit, like the
// one internet link a real mirror pulls through. ferry reaches the upstream (and the
// CDN it redirects to) through it with its per-registry `proxy` setting, so a cold
// download is as slow as a real one while clients still get bytes at loopback speed.
// Only absolute-form http:// requests to 127.0.0.1 are relayed.
import http from "node:http";
import type { Socket } from "node:net";

export interface ThrottleProxy {
  url: string;
  stop(): Promise<void>;
}

export async function startThrottleProxy(bytesPerSecond: number): Promise<ThrottleProxy> {
  let nextFree = 0; // ms (performance.now) when the link is free again
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    let target: URL;
    try {
      target = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (target.protocol !== "http:" || target.hostname !== "127.0.0.1") {
      res.writeHead(403).end();
      return;
    }
    const headers = { ...req.headers };
    delete headers["proxy-connection"];
    const up = http.request({ host: target.hostname, port: Number(target.port || 80), method: req.method, path: target.pathname + target.search, headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.on("data", (chunk: Buffer) => {
        const now = performance.now();
        const start = Math.max(now, nextFree);
        nextFree = start + (chunk.length / bytesPerSecond) * 1000;
        const wait = nextFree - now;
        if (wait > 1) {
          ur.pause();
          setTimeout(() => {
            res.write(chunk);
            ur.resume();
          }, wait);
        } else res.write(chunk);
      });
      ur.on("end", () => {
        const wait = Math.max(0, nextFree - performance.now());
        setTimeout(() => res.end(), wait + 2);
      });
      ur.on("error", () => res.destroy());
    });
    up.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = addr && typeof addr === "object" ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await Promise.race([new Promise<void>((r) => server.close(() => r())), Bun.sleep(2000)]);
    },
  };
}
