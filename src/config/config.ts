// The validated, typed configuration every other module reads.

export interface EndpointConfig {
  url: string; // origin (and optional path prefix) of a registry API, no trailing slash
  username?: string;
  password?: string;
  timeoutMs: number; // connect + time to response headers
}

export interface RegistryConfig {
  name: string; // "docker.io", "ghcr.io", …: also the path prefix and the ?ns= value
  hosts: string[]; // Host headers that select this registry
  endpoints: EndpointConfig[]; // tried in order
}

export interface Config {
  server: { hostname: string; port: number; publicUrl?: string };
  cache: { dir: string; maxSize?: number; tagTtlMs: number; negativeTtlMs: number };
  log: { level: string };
  registries: RegistryConfig[];
}
