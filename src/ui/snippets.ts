// The client configuration people copy from the landing page, for one mirror URL and
// the registries it serves. Pure text builders (no HTML): landing.ts escapes them.
import { DOCKER_HUB } from "../protocol/image-reference.ts";
import { mirrorHostOf, type ServedRegistry } from "./reference.ts";

export interface MirrorSite {
  url: string; // "https://mirror.example.com" (no trailing slash)
  host: string; // "mirror.example.com" (host[:port], what image references start with)
  plainHttp: boolean;
  registries: readonly ServedRegistry[];
}

export function mirrorSite(url: string, registries: readonly ServedRegistry[]): MirrorSite {
  const clean = url.replace(/\/+$/, "");
  return { url: clean, host: mirrorHostOf(clean), plainHttp: clean.startsWith("http://"), registries };
}

/** Where each registry really is (containerd's `server`): Docker Hub's API is registry-1. */
export function upstreamServer(registry: string): string {
  return registry === DOCKER_HUB ? "https://registry-1.docker.io" : `https://${registry}`;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, "");
  return h === "localhost" || /^127\./.test(h) || h === "[::1]";
}

/** A plain-HTTP mirror off loopback needs to be declared insecure by most clients. */
export function needsInsecure(site: MirrorSite): boolean {
  return site.plainHttp && !isLoopback(site.host);
}

export function dockerDaemonJson(site: MirrorSite): string {
  const lines = [`  "registry-mirrors": [${JSON.stringify(site.url)}]`];
  if (needsInsecure(site)) lines.push(`  "insecure-registries": [${JSON.stringify(site.host)}]`);
  return `{\n${lines.join(",\n")}\n}\n`;
}

export const DOCKER_RESTART = "sudo systemctl restart docker";

export function containerdHostsToml(site: MirrorSite, registry: string): string {
  return `server = "${upstreamServer(registry)}"\n\n[host."${site.url}"]\n  capabilities = ["pull", "resolve"]\n`;
}

/** A shell script that writes /etc/containerd/certs.d/<registry>/hosts.toml for every served registry. */
export function containerdScript(site: MirrorSite): string {
  const parts = site.registries.map((r) => {
    const dir = `/etc/containerd/certs.d/${r.name}`;
    return `sudo mkdir -p ${dir}\nsudo tee ${dir}/hosts.toml >/dev/null <<'EOF'\n${containerdHostsToml(site, r.name)}EOF\n`;
  });
  return parts.join("\n");
}

export const CONTAINERD_CONFIG = `# /etc/containerd/config.toml (containerd 1.x; 2.x reads certs.d by default)
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`;

export function podmanRegistriesConf(site: MirrorSite): string {
  const insecure = site.plainHttp ? "\ninsecure = true" : ""; // containers/image wants it for any plain-HTTP mirror
  return site.registries
    .map((r) => `[[registry]]\nprefix = "${r.name}"\nlocation = "${r.name}"\n\n[[registry.mirror]]\nlocation = "${site.host}/${r.name}"${insecure}\n`)
    .join("\n");
}

export function k3sRegistriesYaml(site: MirrorSite): string {
  return `mirrors:\n${site.registries.map((r) => `  ${yamlKey(r.name)}:\n    endpoint:\n      - "${site.url}"\n`).join("")}`;
}

/** For a containerd that does not send ?ns= (before 1.5): name the registry in the path instead. */
export function k3sRewriteExample(site: MirrorSite, registry: string): string {
  return `mirrors:\n  ${yamlKey(registry)}:\n    endpoint:\n      - "${site.url}"\n    rewrite:\n      "^(.*)$": "${registry}/$1"\n`;
}

function yamlKey(name: string): string {
  return /^[a-z0-9.-]+$/.test(name) ? name : JSON.stringify(name);
}

const EXAMPLES: Record<string, string> = {
  "docker.io": "library/redis",
  "ghcr.io": "owner/image:tag",
  "gcr.io": "distroless/static:nonroot",
  "k8s.gcr.io": "pause:3.9",
  "registry.k8s.io": "pause:3.9",
  "quay.io": "prometheus/prometheus:latest",
  "mcr.microsoft.com": "dotnet/runtime:8.0",
  "docker.elastic.co": "elasticsearch/elasticsearch:8.15.0",
  "nvcr.io": "nvidia/cuda:12.4.1-base-ubuntu22.04",
};

export interface PrefixExample {
  registry: string;
  upstream: string; // what people would otherwise pull
  mirror: string; // the same through this mirror
  aliases: string[]; // the same through the registry's host aliases
}

export function prefixExamples(site: MirrorSite): PrefixExample[] {
  return site.registries.map((r) => {
    const path = EXAMPLES[r.name] ?? "owner/image:tag";
    return {
      registry: r.name,
      upstream: r.name === DOCKER_HUB ? path.replace(/^library\//, "") : `${r.name}/${path}`,
      mirror: r.name === DOCKER_HUB ? `${site.host}/${path}` : `${site.host}/${r.name}/${path}`,
      aliases: r.hosts.map((h) => `${h}/${path}`),
    };
  });
}
