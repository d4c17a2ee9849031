// Bare relays written in Bun, for scenario 3: the least a mirror on this runtime can do.
//   bun bench/lib/bun-relay.ts <port> <upstream>              relay only
//   bun bench/lib/bun-relay.ts <port> <upstream> <store dir>  relay, hash and store blobs
// Each request goes to the upstream; a blob redirect is followed here (without the
// Authorization header, which the CDN refuses). Relay only: the upstream's body goes to
// Bun.serve as it is, which pipes it natively: no cache, no digest check, no disk. With
// a store dir, each chunk of a blob is also hashed (SHA-256) and written to a file there,
// and the stream fails instead of ending if the digest is wrong: a mirror's obligatory
// work and nothing else (no single-flight, no resume, no index, no tiers).
import { closeSync, openSync, writeSync } from "node:fs";
import { fullGC } from "bun:jsc";
import { join } from "node:path";

const [port, upstream, storeDir] = process.argv.slice(2);
if (!port || !upstream) throw new Error("usage: bun-relay.ts <port> <upstream url> [store dir]");

Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/_relay/ready") return new Response("ok");
    const headers = new Headers(request.headers);
    headers.delete("host");
    let response = await fetch(upstream + url.pathname + url.search, { method: request.method, headers, redirect: "manual" });
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      headers.delete("authorization");
      response = await fetch(new URL(location, upstream), { method: request.method, headers });
    }
    const blob = /\/blobs\/sha256:([0-9a-f]{64})$/.exec(url.pathname)?.[1];
    const body = storeDir && blob && response.ok && response.body ? hashedAndStored(response.body, blob, join(storeDir, blob)) : response.body;
    return new Response(body, { status: response.status, headers: response.headers });
  },
});
console.log(`bun relay on ${port} → ${upstream}${storeDir ? `, storing in ${storeDir}` : ""}`);

function hashedAndStored(body: ReadableStream<Uint8Array>, hex: string, path: string): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const hasher = new Bun.CryptoHasher("sha256");
  const fd = openSync(path, "w");
  let offset = 0;
  let sinceGc = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          closeSync(fd);
          if (hasher.digest("hex") === hex) controller.close();
          else controller.error(new Error("digest mismatch"));
          return;
        }
        hasher.update(value);
        for (let written = 0; written < value.byteLength; ) written += writeSync(fd, value, written, value.byteLength - written, offset + written);
        offset += value.byteLength;
        // As in ferry (src/registry/blob-download.ts): without it the chunk garbage piles up.
        if ((sinceGc += value.byteLength) >= 64 * 1024 * 1024) {
          sinceGc = 0;
          fullGC();
        }
        controller.enqueue(value);
      },
    },
    { highWaterMark: 0 },
  );
}
