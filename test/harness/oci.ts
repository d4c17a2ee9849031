// Small things many tests need: the Accept header a modern client sends, digests of
// received bytes, and a config that keeps ferry to the loopback upstream.

/** What Docker and containerd send when resolving a tag (modern manifest types). */
export const ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

export function sha256(bytes: ArrayBuffer | Uint8Array): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(new Uint8Array(bytes)).digest("hex")}`;
}

const BUILT_IN = ["ghcr.io", "gcr.io", "k8s.gcr.io", "registry.k8s.io", "quay.io", "mcr.microsoft.com", "docker.elastic.co", "nvcr.io"];

/** Every built-in registry but docker.io turned off: no test name can reach a real registry. */
export const OTHER_REGISTRIES_OFF = BUILT_IN.map((n) => `[[registry]]\nname = "${n}"\nenabled = false`).join("\n");

/** A [[registry]] block sending docker.io to a loopback upstream (plus extra keys). */
export function hubRegistry(upstreamUrl: string, extra = ""): string {
  return `[[registry]]\nname = "docker.io"\nendpoints = ["${upstreamUrl}"]\nallow_private_redirects = true\n${extra}`;
}
