// Manifest media types and Accept negotiation.

export const MediaType = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
} as const;

/** What ferry asks upstream for when it fetches on its own behalf (every modern type). */
export const ALL_MANIFEST_TYPES = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
] as const;

const acceptMemo = new Map<string, string[]>();

/** Media types listed in Accept headers (possibly several headers, comma lists, q-params). */
export function parseAccept(values: readonly string[]): string[] {
  // Clients send the same few Accept headers over and over: remember (bounded) what they mean.
  const key = values.join("\n");
  const known = acceptMemo.get(key);
  if (known) return known;
  const types = parseAcceptUncached(values);
  if (acceptMemo.size < 256 && key.length < 2048) acceptMemo.set(key, types);
  return types;
}

function parseAcceptUncached(values: readonly string[]): string[] {
  const types: string[] = [];
  for (const value of values) {
    for (const part of value.split(",")) {
      const type = part.split(";")[0]?.trim().toLowerCase();
      if (type) types.push(type);
    }
  }
  return types;
}

/**
 * Whether a client that sent these Accept types takes a manifest of this media type.
 * No Accept (or a wildcard) takes anything: that is how old clients and curl behave.
 */
export function acceptsMediaType(accepted: readonly string[], mediaType: string): boolean {
  if (accepted.length === 0) return true;
  const type = mediaType.toLowerCase();
  return accepted.some((a) => a === type || a === "*/*" || a === "application/*");
}

/** The media type a manifest declares in its own body, if any (OCI manifests may omit it). */
export function mediaTypeFromBody(bytes: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown; manifests?: unknown; schemaVersion?: unknown; layers?: unknown; signatures?: unknown };
    if (typeof parsed.mediaType === "string") return parsed.mediaType;
    // schema1 has no mediaType field; signed ones carry their JWS signatures inline.
    if (parsed.schemaVersion === 1) return Array.isArray(parsed.signatures) ? MediaType.dockerSchema1Signed : MediaType.dockerSchema1;
    if (Array.isArray(parsed.manifests)) return MediaType.ociIndex;
    if (Array.isArray(parsed.layers)) return MediaType.ociManifest;
    return undefined;
  } catch {
    return undefined;
  }
}
