// Bare relays written in Bun, for scenario 3: the least a mirror on this runtime can do.
//   bun bench/lib/bun-relay.ts <port> <upstream>              relay only
//   bun bench/lib/bun-relay.ts <port> <upstream> <store dir>  relay, hash and store blobs
//   bun bench/lib/bun-relay.ts <port> <upstream> <store dir> native
//                                 the same work, another data path (issue 21): the body is
//                                 piped natively to the file (Bun.write(file, response)),
//                                 and the file is hashed and served from the page cache in
//                                 large preads behind the write, the last chunk held until
//                                 the digest is verified
//   bun bench/lib/bun-relay.ts <port> <upstream> <store dir> worker
//                                 the JS-stream relay with hashing and the file write on a
//                                 worker thread (bench/lib/hash-worker.ts), fed copies of
//                                 the chunks in ~1 MiB batches, the last chunk held until
//                                 the worker's digest matches
// Each request goes to the upstream; a blob redirect is followed here (without the
// Authorization header, which the CDN refuses). Relay only: the upstream's body goes to
// Bun.serve as it is, which pipes it natively: no cache, no digest check, no disk. With
// a store dir, each chunk of a blob is also hashed (SHA-256) and written to a file there,
// and the stream fails instead of ending if the digest is wrong: a mirror's obligatory
// work and nothing else (no single-flight, no resume, no index, no tiers).
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { fullGC } from "bun:jsc";
import { join } from "node:path";

const [port, upstream, storeDir, mode] = process.argv.slice(2);
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
    const stored = storeDir && blob && response.ok && response.body;
    const body = !stored
      ? response.body
      : mode === "native"
        ? pipedThenRead(response, blob, join(storeDir, blob))
        : mode === "worker"
          ? hashedOnWorker(response.body!, blob, join(storeDir, blob))
          : mode === "pipedhash"
            ? pipedHashedOnWorker(response, blob, join(storeDir, blob))
          : hashedAndStored(response.body!, blob, join(storeDir, blob));
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

/** How far behind the native write the reader reads, at most, in one pread. */
const READ_CHUNK = 4 * 1024 * 1024;

/**
 * The upstream body goes to the file natively (no JS per chunk); the client's stream reads
 * the file behind the write in large preads, hashes what it read and sends it, holding the
 * last chunk until the whole file's digest matches.
 */
function pipedThenRead(response: Response, hex: string, path: string): ReadableStream<Uint8Array> {
  const size = Number(response.headers.get("content-length") ?? NaN);
  let written: number | undefined; // set when the native write has finished
  let failed: Error | undefined;
  // The file exists before the write starts, so the reader can open it at once (Bun.write
  // truncates the same inode).
  const fd = openSync(path, "w+");
  const done = Bun.write(path, response).then(
    (n) => void (written = n),
    (e: Error) => void (failed = e),
  );
  const hasher = new Bun.CryptoHasher("sha256");
  let offset = 0;
  let held: Uint8Array | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (let spins = 0; spins < 100_000; spins++) {
          if (failed) return controller.error(failed);
          const end = written ?? fstatSync(fd).size;
          if (end > offset) {
            const chunk = new Uint8Array(Math.min(READ_CHUNK, end - offset));
            const n = readSync(fd, chunk, 0, chunk.byteLength, offset);
            offset += n;
            const data = n === chunk.byteLength ? chunk : chunk.subarray(0, n);
            hasher.update(data);
            const previous = held;
            held = data;
            // A pull that enqueues nothing is not called again: return only after an enqueue.
            if (previous) {
              controller.enqueue(previous);
              if (written === undefined || offset < written) return;
            }
            continue;
          }
          if (written !== undefined && offset >= written) {
            closeSync(fd);
            if (hasher.digest("hex") !== hex || (Number.isFinite(size) && written !== size)) return controller.error(new Error("digest mismatch"));
            if (held) controller.enqueue(held);
            return controller.close();
          }
          // Behind the writer with nothing new yet: wait for the write to advance or end.
          await Promise.race([done, Bun.sleep(1)]);
        }
        controller.error(new Error("the native write stalled"));
      },
    },
    { highWaterMark: 0 },
  );
}

const BATCH = 1024 * 1024;

/** Chunks go to the client as they come (the last one held); a worker hashes and writes copies. */
function hashedOnWorker(body: ReadableStream<Uint8Array>, hex: string, path: string): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const worker = new Worker(new URL("./hash-worker.ts", import.meta.url).href);
  const digest = new Promise<string>((resolve) => worker.addEventListener("message", (e: MessageEvent<{ digest: string }>) => resolve(e.data.digest), { once: true }));
  worker.postMessage({ open: path });
  let batch = new Uint8Array(BATCH);
  let filled = 0;
  const flush = () => {
    if (filled === 0) return;
    worker.postMessage({ batch: batch.buffer, length: filled }, [batch.buffer]);
    batch = new Uint8Array(BATCH);
    filled = 0;
  };
  let held: Uint8Array | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            flush();
            worker.postMessage({ end: true });
            const ok = (await digest) === hex;
            void worker.terminate();
            if (!ok) return controller.error(new Error("digest mismatch"));
            if (held) controller.enqueue(held);
            return controller.close();
          }
          for (let at = 0; at < value.byteLength; ) {
            const n = Math.min(BATCH - filled, value.byteLength - at);
            batch.set(value.subarray(at, at + n), filled);
            filled += n;
            at += n;
            if (filled === BATCH) flush();
          }
          const previous = held;
          held = value;
          if (previous) return controller.enqueue(previous);
        }
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The upstream body goes to the file natively (no JS per chunk); a worker hashes the file
 * from the page cache behind the write (bench/lib/file-hash-worker.ts) and says how far it
 * got; the client is served 4 MiB preads of the hashed part, the last byte once the digest matches.
 */
function pipedHashedOnWorker(response: Response, hex: string, path: string): ReadableStream<Uint8Array> {
  const size = Number(response.headers.get("content-length") ?? NaN);
  if (!Number.isFinite(size)) return hashedAndStored(response.body!, hex, path);
  const fd = openSync(path, "w+");
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  void Bun.write(path, response).then(poke, (e: Error) => {
    failed = e;
    poke();
  });
  let hashed = 0;
  let digest: string | undefined;
  const worker = new Worker(new URL("./file-hash-worker.ts", import.meta.url).href);
  worker.onmessage = (e: MessageEvent<{ hashed: number; digest?: string }>) => {
    hashed = e.data.hashed;
    if (e.data.digest) digest = e.data.digest;
    poke();
  };
  worker.postMessage({ path, size });
  let offset = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (let turns = 0; turns < 1_000_000; turns++) {
          if (failed) return controller.error(failed);
          const verified = digest !== undefined;
          if (verified && digest !== hex) return controller.error(new Error("digest mismatch"));
          const limit = verified ? size : Math.min(hashed, size - 1);
          if (offset < limit) {
            const chunk = new Uint8Array(Math.min(READ_CHUNK, limit - offset));
            const n = readSync(fd, chunk, 0, chunk.byteLength, offset);
            offset += n;
            return controller.enqueue(n === chunk.byteLength ? chunk : chunk.subarray(0, n));
          }
          if (offset >= size) {
            closeSync(fd);
            void worker.terminate();
            return controller.close();
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      },
    },
    { highWaterMark: 0 },
  );
}
