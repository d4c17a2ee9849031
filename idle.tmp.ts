const mode = process.argv[2];
const server = Bun.serve({ port: 0, idleTimeout: 2, fetch(req, srv) {
  let n = 0;
  if (mode === "zero") srv.timeout(req, 0);
  return new Response(new ReadableStream({ async pull(c) { await Bun.sleep(mode === "silent" ? 3000 : 200); if (mode === "rearm") srv.timeout(req, 2); if (n++ > (mode === "silent" ? 2 : 30)) c.close(); else c.enqueue(new Uint8Array(16384)); } }, { highWaterMark: 0 }));
}});
const t = performance.now();
try { const r = await fetch(`http://127.0.0.1:${server.port}/`); const b = await r.arrayBuffer(); console.log(mode, "ok", b.byteLength, performance.now() - t); }
catch (e) { console.log(mode, "fail", (e as Error).message.slice(0,30), performance.now() - t); }
server.stop(true);
