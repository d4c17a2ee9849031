// What the registry layer hands back to the server: values, not HTTP responses.

export type CacheResult = "hit" | "miss" | "stale" | "bypass";

export interface ManifestResult {
  digest: string;
  mediaType: string;
  body: Uint8Array;
  cache: CacheResult;
}

export type BlobBody =
  | { kind: "file"; path: string } // a verified cached blob: sent with sendfile
  | { kind: "stream"; stream: ReadableStream<Uint8Array> } // following a download; its chunks are lent (ChunkUse): for an HTTP response
  | { kind: "redirect"; url: string } // a short-lived URL of the shared store
  | { kind: "none" }; // HEAD

export type BlobSourceTier = "local" | "shared" | "upstream";

export interface BlobResult {
  digest: string;
  /** Which tier the bytes come from. */
  source: BlobSourceTier;
  /** Size of the whole blob; undefined only while streaming from an upstream that sent no length. */
  size: number | undefined;
  /** The byte range served, when the client asked for one that could be satisfied. */
  range?: { start: number; end: number };
  body: BlobBody;
  cache: CacheResult;
}

export interface TagList {
  name: string;
  tags: string[];
}
