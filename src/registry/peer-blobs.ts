// A blob another replica is downloading, streamed from that replica. The lease holder
// publishes its peer URL and a token in the lease (cache/locks.ts); a replica asked for
// the same blob proxies the holder's running download instead of waiting in silence
// for the shared copy (a client would be cut off by the idle timeout first). One
// upstream GET for the fleet, and every client gets bytes as they arrive. If the holder
// goes away, the waiter follows the next holder or takes the lease and fetches itself,
// resuming from the byte it reached.
import { networkInterfaces } from "node:os";
import type { BlobKey } from "../cache/blob-store.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import type { Lease, LeaseHolder, LockService } from "../cache/locks.ts";
import type { RemoteBlobStore } from "../cache/remote-blob-store.ts";
import type { Logger } from "../observe/logger.ts";
import { UpstreamError } from "../upstream/errors.ts";
import type { BlobSource, OpenedBody } from "./blob-sources.ts";

export const PEER_PATH = "/_ferry/peer/blob";
export const PEER_TOKEN_HEADER = "x-ferry-peer-token";

/** The peer's answer must start this soon (its body may then pause as its upstream does). */
const PEER_HEADERS_TIMEOUT_MS = 5_000;
/** The holder's own upstream stalls are bounded by its stall timeout and resumes. */
const PEER_STALL_TIMEOUT_MS = 60_000;

/** The waiting replica's side: the holder's download, then whoever holds the lease next. */
export class PeerBlobSource implements BlobSource {
  readonly kind = "peer";
  private lease: Lease | undefined;
  private takenOver: BlobSource | undefined;
  /** Holders that stopped answering: their lease is waited out, not asked again. */
  private readonly gone = new Set<string>();

  /** Whether this replica took over and fetched from upstream (so the shared copy is its job). */
  get fetchedUpstream(): boolean {
    return this.takenOver?.kind === "upstream";
  }

  constructor(
    private peer: LeaseHolder | undefined,
    private readonly key: BlobKey,
    private readonly locks: LockService,
    private readonly leaseName: string,
    /** With the lease ours: where to fetch from (the shared copy if it appeared, else upstream). */
    private readonly takeOver: () => Promise<BlobSource>,
    private readonly log: Logger,
  ) {}

  async open(offset: number, signal: AbortSignal): Promise<OpenedBody> {
    // A dead holder's lease lasts until it expires: wait that long, and a little more.
    const deadline = Date.now() + this.locks.leaseMs * 2 + 5_000;
    for (let round = 0; round < 1_000 && Date.now() < deadline; round++) {
      if (this.takenOver) return this.takenOver.open(offset, signal);
      const peer = this.peer;
      if (peer) {
        const opened = await this.fromPeer(peer, offset, signal).catch((error: Error) => {
          this.gone.add(peer.token);
          this.log.warn({ blob: `${this.key.registry}/${this.key.digest}`, peer: peer.peerUrl, at: offset, error: error.message }, "peer replica stopped serving its download; following the next lease holder");
          return undefined;
        });
        if (opened) return opened;
      }
      const lease = await this.locks.acquire(this.leaseName);
      if (lease) {
        this.lease = lease;
        this.takenOver = await this.takeOver();
        continue;
      }
      const next = await this.locks.holder(this.leaseName);
      this.peer = next && !this.gone.has(next.token) ? next : undefined;
      if (!this.peer) await Bun.sleep(250);
    }
    throw new UpstreamError(`peer ${this.peer?.peerUrl ?? "replica"}`, { kind: "network", message: "no replica could serve the download" });
  }

  bodyFailed(error: Error): boolean {
    return this.takenOver ? this.takenOver.bodyFailed(error) : true;
  }

  /** Releases the lease if this replica took over (once the download is over). */
  async release(): Promise<void> {
    await this.lease?.release();
  }

  private async fromPeer(peer: LeaseHolder, offset: number, signal: AbortSignal): Promise<OpenedBody | undefined> {
    const url = `${peer.peerUrl}${PEER_PATH}?registry=${encodeURIComponent(this.key.registry)}&digest=${encodeURIComponent(this.key.digest)}`;
    const headersTimeout = new AbortController();
    const timer = setTimeout(() => headersTimeout.abort(), PEER_HEADERS_TIMEOUT_MS);
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { [PEER_TOKEN_HEADER]: peer.token, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) },
        signal: AbortSignal.any([signal, headersTimeout.signal]),
        redirect: "manual",
        decompress: false,
      });
    } finally {
      clearTimeout(timer);
    }
    const expected = offset > 0 ? 206 : 200;
    const start = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1];
    if (response.status !== expected || !response.body || (offset > 0 && Number(start) !== offset)) {
      await response.body?.cancel();
      throw new Error(`peer answered ${response.status}`);
    }
    const total = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1] ?? response.headers.get("x-ferry-blob-size");
    return { size: total ? Number(total) : undefined, body: response.body, stallTimeoutMs: PEER_STALL_TIMEOUT_MS };
  }
}

/**
 * Publishes a blob from the local tier to the shared store: a replica that took over a
 * dead holder's download wrote only its local tier (the shared upload is chosen when a
 * download starts), so the fleet's one copy goes up now, before the lease is released.
 */
export async function shareLocalCopy(local: FsBlobStore, shared: RemoteBlobStore, key: BlobKey, log: Logger): Promise<void> {
  const info = await local.stat(key);
  if (!info) return;
  const upload = shared.beginUpload(key, info.size);
  try {
    for await (const chunk of Bun.file(info.path).stream()) await upload.write(chunk);
    await upload.complete();
  } catch (error) {
    await upload.abort();
    log.warn({ blob: `${key.registry}/${key.digest}`, error: (error as Error).message }, "could not publish the blob to the shared store");
  }
}

/** server.peer_url's default: the listen address, or the first non-loopback IPv4 for a wildcard. */
export function defaultPeerUrl(hostname: string, port: number): string {
  if (hostname !== "0.0.0.0" && hostname !== "::" && hostname !== "") return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  const address = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
  return `http://${address ?? "127.0.0.1"}:${port}`;
}
