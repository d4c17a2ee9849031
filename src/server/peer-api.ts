// GET /_ferry/peer/blob: another replica streams a download this one holds the lease
// for (registry/peer-blobs.ts). Admitted by the token published in our lease, which
// only Redis and the replicas see; anything else is a 403.
import { Elysia } from "elysia";
import type { BlobKey } from "../cache/blob-store.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import type { BlobDownload } from "../registry/blob-download.ts";
import { PEER_PATH, PEER_TOKEN_HEADER } from "../registry/peer-blobs.ts";
import type { Mirror } from "../registry/mirror.ts";
import { requestUrl } from "../protocol/request-url.ts";
import { markStreamed } from "./stream-timeout.ts";

/** How long the holder looks for a download it has just been granted the lease for. */
const HOLDER_START_WAIT_MS = 2_000;

/** What the peer endpoint reads: the lease tokens, the served registries, downloads in flight and the local tier. */
export function peerApi(mirror: Pick<Mirror, "locks" | "config" | "blobs" | "blobStore">) {
  return new Elysia({ name: "peer-api" }).get(PEER_PATH, async ({ request }) => {
    const token = request.headers.get(PEER_TOKEN_HEADER);
    if (!token || !mirror.locks.ownsToken(token)) return new Response("not a peer of this replica\n", { status: 403 });
    const url = requestUrl(request);
    const registry = url.searchParams.get("registry") ?? "";
    const digest = url.searchParams.get("digest") ?? "";
    if (!/^[a-z0-9]+:[a-f0-9]{32,}$/.test(digest) || !mirror.config.registries.some((r) => r.name === registry)) {
      return new Response("bad blob reference\n", { status: 400 });
    }
    return peerCopy(mirror.blobs.inFlight, mirror.blobStore, { registry, digest }, request.headers.get("range"));
  });
}

/**
 * The lease holder's side: its running download of `key` from `range`'s offset, or the
 * blob from its local tier once the download is over; 404 when it has neither.
 */
async function peerCopy(downloads: ReadonlyMap<string, BlobDownload>, local: FsBlobStore, key: BlobKey, range: string | null): Promise<Response> {
  const offset = Number(/^bytes=(\d+)-$/.exec(range ?? "")?.[1] ?? 0);
  const id = `${key.registry}/${key.digest}`;
  const deadline = Date.now() + HOLDER_START_WAIT_MS;
  do {
    // The running download first, then the store (a download leaves the map once stored).
    const running = downloads.get(id);
    if (running) {
      const size = await running.ready.catch(() => null);
      if (size === null) return downloadFailed();
      if (size === undefined && offset > 0) return new Response("size unknown\n", { status: 416 });
      // Answered once a byte is there: a download that fails first is a 502 the waiting
      // replica reads as such, not a 200 whose body breaks.
      const body = await running.readerWithFirstBytes(offset, undefined, "lent").catch(() => null);
      if (body === null) return downloadFailed();
      return bodyFrom(body, offset, size);
    }
    const cached = await local.stat(key);
    if (cached) return bodyFrom(Bun.file(cached.path).slice(offset).stream(), offset, cached.size);
    // Granted the lease a moment ago, the holder may not have started yet.
    await Bun.sleep(50);
  } while (Date.now() < deadline);
  return new Response("no such download here\n", { status: 404 });
}

function downloadFailed(): Response {
  return new Response("download failed\n", { status: 502 });
}

function bodyFrom(body: ReadableStream<Uint8Array>, offset: number, size: number | undefined): Response {
  const headers: Record<string, string> = { "Content-Type": "application/octet-stream" };
  if (size !== undefined) {
    headers["Content-Length"] = String(size - offset);
    headers["x-ferry-blob-size"] = String(size);
    if (offset > 0) headers["Content-Range"] = `bytes ${offset}-${size - 1}/${size}`;
  }
  return new Response(body, { status: offset > 0 ? 206 : 200, headers: markStreamed(headers) });
}

