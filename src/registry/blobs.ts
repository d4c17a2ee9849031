// Blob pulls through the tiers: local disk → shared store (S3) → upstream.
// - Local hit: sendfile (and, if the shared store lacks the blob, a background copy
//   there: shared-backfill.ts). Shared hit: a 307 to a short-lived URL (redirect mode), or a
//   download from the shared store into the local tier, streamed to the client.
// - Miss everywhere: one replica (Redis lease) downloads from upstream, writing the local
//   tier and the shared store at once; the others stream it from that replica as it
//   arrives (peer-blobs.ts), or wait for the shared copy when the holder names no peer.
// - HEAD on an uncached blob is answered from an upstream HEAD; it never downloads.
import { CacheWriteError, type BlobKey } from "../cache/blob-store.ts";
import type { FsBlobStore } from "../cache/fs-blob-store.ts";
import type { Lease, LeaseHolder, LockService } from "../cache/locks.ts";
import type { RemoteBlobStore } from "../cache/remote-blob-store.ts";
import { TeeBlobWriter } from "../cache/tee-blob-writer.ts";
import type { Logger } from "../observe/logger.ts";
import { RegistryError } from "../protocol/errors.ts";
import { parseRange, type ByteRange } from "../protocol/range.ts";
import type { Credentials } from "../upstream/auth.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";
import { BlobDownload, type DownloadSlots, type RefusedBody } from "./blob-download.ts";
import type { BlobMembership } from "./blob-membership.ts";
import { PeerBlobSource, shareLocalCopy } from "./peer-blobs.ts";
import { SharedStoreBlobSource, UpstreamBlobSource, type BlobSource } from "./blob-sources.ts";
import { SharedBackfill } from "./shared-backfill.ts";
import type { BlobResult } from "./results.ts";
import { openUncached } from "./uncached-blob.ts";
import { toRegistryError } from "./upstream-errors.ts";

export interface BlobRequest {
  registry: string;
  repository: string;
  digest: string;
  method: "GET" | "HEAD";
  range: string | null;
  /** A passthrough client's own upstream credentials, for what has to be fetched. */
  credentials?: Credentials;
}

export interface SharedBlobTier {
  store: RemoteBlobStore;
  /** Answer shared-store hits with a 307 to a short-lived URL instead of streaming them. */
  redirect: boolean;
  urlTtlSeconds: number;
}

/** How long a replica waits for another one's download before giving up (bounded). */
const MAX_WAIT_FOR_PEER_MS = 10 * 60_000;

export class BlobService {
  private sharedDown = false;
  private readonly backfill: SharedBackfill | undefined;

  constructor(
    private readonly local: FsBlobStore,
    private readonly shared: SharedBlobTier | undefined,
    private readonly locks: LockService,
    private readonly clientFor: (registry: string) => RegistryClient,
    private readonly log: Logger,
    private readonly membership: BlobMembership,
    private readonly slots: DownloadSlots,
    /** Downloads in flight, shared with the generations before and after a reload (single-flight across them). */
    private readonly downloads = new Map<string, BlobDownload>(),
  ) {
    this.backfill = shared ? new SharedBackfill(shared.store, (key) => locks.acquire(leaseName(key)), log) : undefined;
  }

  /** Downloads in progress (for status pages and draining). */
  get inFlight(): ReadonlyMap<string, BlobDownload> {
    return this.downloads;
  }

  /** The max_downloads bound: places taken (cached and uncached downloads) and requests waiting for one. */
  get downloadPlaces(): { max: number; taken: number; waiting: number } {
    return { max: this.slots.max, taken: this.slots.active, waiting: this.slots.waiting };
  }

  async get(req: BlobRequest): Promise<BlobResult> {
    const key: BlobKey = { registry: req.registry, digest: req.digest };
    const what = `blob ${req.digest} of ${req.repository}`;
    const confirmed = this.clientFor(req.registry).upstream.registry.passthroughAuth ? await this.confirmMember(req, what) : undefined;
    // The download in progress first, then the store: a download leaves the map only once
    // its blob is in the store, so in this order a request can't miss both (the other way
    // round, a download that finished during the stat was started again).
    const running = this.downloads.get(keyString(key));
    const cached = running ? undefined : await this.local.stat(key);
    if (cached) {
      this.local.touch(key);
      this.backfill?.offer(key, cached.path, cached.size);
      const range = rangeOf(req.range, cached.size);
      return { digest: req.digest, source: "local", size: cached.size, range, body: req.method === "HEAD" ? { kind: "none" } : { kind: "file", path: cached.path }, cache: "hit" };
    }
    if (req.method === "HEAD") {
      if (running?.size !== undefined) return { digest: req.digest, source: "upstream", size: running.size, body: { kind: "none" }, cache: "miss" };
      const inShared = await this.sharedStat(key);
      if (inShared) return { digest: req.digest, source: "shared", size: inShared.size, body: { kind: "none" }, cache: "hit" };
      return confirmed ?? this.headUpstream(req, what);
    }
    if (running) return this.follow(running, req, what, running.sourceKind === "upstream" ? "upstream" : "shared");
    let shared: { size: number } | undefined;
    let lease: Lease | undefined;
    let peer: LeaseHolder | undefined;
    if (this.shared) {
      // While another replica holds the lease, its upload may be completing: the shared
      // copy is trusted only once the lease is released (after the upload completed).
      if (!(await this.locks.isHeld(leaseName(key)))) shared = await this.sharedStat(key);
      if (!shared) ({ shared, lease, peer } = await this.leaseOrPeerCopy(key));
    }
    if (peer) return this.fromPeer(key, req, what, peer);
    if (shared) {
      if (this.shared!.redirect) {
        const url = await this.shared!.store.publicUrl(key, this.shared!.urlTtlSeconds);
        return { digest: req.digest, source: "shared", size: shared.size, body: { kind: "redirect", url }, cache: "hit" };
      }
      // Another request may have started the same copy while we looked.
      const download = this.downloads.get(keyString(key)) ?? this.start(key, new SharedStoreBlobSource(this.shared!.store, key, shared.size), false);
      return this.follow(download, req, what, "shared");
    }
    const download = this.downloads.get(keyString(key)) ?? this.start(key, new UpstreamBlobSource(this.clientFor(key.registry), req.repository, key, req.credentials), true);
    if (lease) download.finished.then(() => lease.release());
    return this.follow(download, req, what, "upstream");
  }

  private async follow(download: BlobDownload, req: BlobRequest, what: string, source: "shared" | "upstream"): Promise<BlobResult> {
    let size: number | undefined;
    let range: ByteRange | undefined;
    let stream: ReadableStream<Uint8Array>;
    try {
      size = await download.ready;
      range = size === undefined ? undefined : rangeOf(req.range, size);
      // Answered once there is a byte to send: a download that fails before the range's
      // first byte is an error answer, not a connection reset (blob-download.ts).
      stream = await (range ? download.readerWithFirstBytes(range.start, range.end + 1, "lent") : download.readerWithFirstBytes(0, undefined, "lent"));
    } catch (error) {
      if (error instanceof CacheWriteError) return this.uncached(download.source, req, what, error, download.takeRefusedBody());
      throw toRegistryError(error, "BLOB_UNKNOWN", what);
    }
    // A download already verified is being published: every byte is local, so it is a hit.
    const local = download.state === "verified" || download.state === "done";
    return { digest: req.digest, source: local ? "local" : source, size, range, body: { kind: "stream", stream }, cache: source === "shared" || local ? "hit" : "miss" };
  }

  /** The local disk refused the blob (full): stream it from the same source, verified, uncached. */
  private async uncached(from: BlobSource, req: BlobRequest, what: string, why: CacheWriteError, refused: RefusedBody | undefined): Promise<BlobResult> {
    this.log.warn({ digest: req.digest, registry: req.registry, reason: why.message }, "blob not cached (local disk); streaming it uncached");
    let opened: Awaited<ReturnType<typeof openUncached>>;
    try {
      opened = await openUncached(from, req.digest, {
        range: (size) => (size === undefined ? undefined : rangeOf(req.range, size)),
        slots: this.slots,
        refused,
        onMismatch: (mismatch) => this.log.warn({ digest: req.digest, registry: req.registry, error: mismatch.message }, "uncached blob failed verification; client's stream cut"),
        onResume: (at, attempt, error) => this.log.warn({ digest: req.digest, registry: req.registry, from: from.kind, at, attempt, error: error.message }, "uncached blob interrupted; resuming"),
      });
    } catch (error) {
      throw toRegistryError(error, "BLOB_UNKNOWN", what);
    }
    return { digest: req.digest, source: from.kind === "shared-store" ? "shared" : "upstream", size: opened.size, range: opened.range, body: { kind: "stream", stream: opened.body }, cache: "bypass" };
  }

  /** Another replica is downloading the blob: stream its download (or take over from it). */
  private fromPeer(key: BlobKey, req: BlobRequest, what: string, peer: LeaseHolder): Promise<BlobResult> {
    const takeOver = async (): Promise<BlobSource> => {
      const shared = await this.sharedStat(key);
      return shared ? new SharedStoreBlobSource(this.shared!.store, key, shared.size) : new UpstreamBlobSource(this.clientFor(key.registry), req.repository, key, req.credentials);
    };
    let download = this.downloads.get(keyString(key));
    if (!download) {
      const source = new PeerBlobSource(peer, key, this.locks, leaseName(key), takeOver, this.log);
      download = this.start(key, source, false);
      const started = download;
      started.finished.then(async () => {
        if (source.fetchedUpstream && started.state === "done") await shareLocalCopy(this.local, this.shared!.store, key, this.log);
        await source.release();
      });
    }
    return this.follow(download, req, what, "shared");
  }

  private start(key: BlobKey, source: BlobSource, fillShared: boolean): BlobDownload {
    const id = keyString(key);
    const shared = fillShared && !this.sharedDown ? this.shared?.store : undefined;
    const download = BlobDownload.start({
      key,
      source,
      log: this.log,
      slots: this.slots,
      createWriter: async (size) => {
        const local = await this.local.begin(key, size);
        return shared ? new TeeBlobWriter(local, (expected) => shared.beginUpload(key, expected), this.log, id) : local;
      },
    });
    this.downloads.set(id, download);
    // Leave the map only once the blob is in the store (or the download failed), so a
    // request arriving in between finds one or the other.
    download.finished.then(() => this.downloads.delete(id));
    return download;
  }

  /**
   * Takes the cross-replica lease for a blob missing everywhere, or names the replica
   * holding it (to stream from), or, when the holder names no peer URL, waits (bounded)
   * for it to publish the blob in the shared store. A lease left by a replica that died
   * expires, and then this one takes over.
   */
  private async leaseOrPeerCopy(key: BlobKey): Promise<{ shared?: { size: number }; lease?: Lease; peer?: LeaseHolder }> {
    const name = leaseName(key);
    const deadline = Date.now() + MAX_WAIT_FOR_PEER_MS;
    for (let round = 0; Date.now() < deadline; round++) {
      // This process started it meanwhile (its own lease): get() follows that download.
      if (this.downloads.has(keyString(key))) return {};
      const lease = await this.locks.acquire(name);
      if (lease) {
        // The holder may have finished between our look and the lease.
        const shared = await this.sharedStat(key);
        if (shared) {
          await lease.release();
          return { shared };
        }
        return { lease };
      }
      const peer = await this.locks.holder(name);
      if (peer) return { peer };
      await Bun.sleep(Math.min(100 * 2 ** Math.min(round, 4), 1_000));
      if (await this.locks.isHeld(name)) continue;
      const shared = await this.sharedStat(key);
      if (shared) return { shared };
    }
    this.log.warn({ blob: keyString(key) }, "gave up waiting for another replica's download; fetching here");
    return {};
  }

  /** The shared store's view of a blob; a store that is down counts as a miss (logged once). */
  private async sharedStat(key: BlobKey): Promise<{ size: number } | undefined> {
    if (!this.shared) return undefined;
    try {
      const info = await this.shared.store.stat(key);
      if (this.sharedDown) this.log.info("shared blob store is back");
      this.sharedDown = false;
      return info;
    } catch (error) {
      if (!this.sharedDown) this.log.warn({ error: (error as Error).message }, "shared blob store unavailable; serving from local disk and upstream");
      this.sharedDown = true;
      return undefined;
    }
  }

  /**
   * passthrough_auth: blobs are stored once per registry, so one is served only under a
   * repository known to hold it; otherwise the upstream decides, asked (HEAD) with the
   * client's own credentials under that repository. Returns that HEAD's answer, if asked.
   */
  private async confirmMember(req: BlobRequest, what: string): Promise<BlobResult | undefined> {
    const repo = { registry: req.registry, repository: req.repository };
    if (await this.membership.has(repo, req.digest)) return undefined;
    const head = await this.headUpstream(req, what); // throws BLOB_UNKNOWN (or the refusal) when it isn't there
    this.membership.note(repo, req.digest);
    return head;
  }

  private async headUpstream(req: BlobRequest, what: string): Promise<BlobResult> {
    try {
      const head = await this.clientFor(req.registry).headBlob(req.repository, req.digest, { credentials: req.credentials });
      if (!head.found) throw head.error;
      return { digest: req.digest, source: "upstream", size: head.size, body: { kind: "none" }, cache: "miss" };
    } catch (error) {
      throw toRegistryError(error, "BLOB_UNKNOWN", what);
    }
  }
}

function leaseName(key: BlobKey): string {
  return `blob:${keyString(key)}`;
}

function keyString(key: BlobKey): string {
  return `${key.registry}/${key.digest}`;
}

function rangeOf(header: string | null, size: number): ByteRange | undefined {
  const parsed = parseRange(header, size);
  if (parsed.kind === "unsatisfiable") {
    throw new RegistryError("RANGE_INVALID", `requested range not satisfiable for a blob of ${size} bytes`, { headers: { "Content-Range": `bytes */${size}` } });
  }
  return parsed.kind === "range" ? parsed.range : undefined;
}
