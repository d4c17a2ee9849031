// Registries ferry serves with no configuration. A [[registry]] entry with the same
// name overrides one (its endpoints replace these); `enabled = false` turns it off.

export interface BuiltinRegistry {
  name: string;
  endpoint: string;
}

export const BUILTIN_REGISTRIES: readonly BuiltinRegistry[] = [
  { name: "docker.io", endpoint: "https://registry-1.docker.io" },
  { name: "ghcr.io", endpoint: "https://ghcr.io" },
  { name: "gcr.io", endpoint: "https://gcr.io" },
  { name: "k8s.gcr.io", endpoint: "https://k8s.gcr.io" },
  { name: "registry.k8s.io", endpoint: "https://registry.k8s.io" },
  { name: "quay.io", endpoint: "https://quay.io" },
  { name: "mcr.microsoft.com", endpoint: "https://mcr.microsoft.com" },
  { name: "docker.elastic.co", endpoint: "https://docker.elastic.co" },
  { name: "nvcr.io", endpoint: "https://nvcr.io" },
];

/** The registry that names without a registry prefix belong to. */
export const DEFAULT_REGISTRY = "docker.io";
