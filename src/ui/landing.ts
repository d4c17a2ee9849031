// The landing page at / for people who pull: how to point each client at THIS mirror
// (its URL filled in), a reference converter and a Docker Hub search box. Rendered on
// the server; landing-client.ts adds the converter, copy buttons and search.
import { html, type Html } from "./html.ts";
import { page } from "./layout.ts";
import { toMirrorReference, type ServedRegistry } from "./reference.ts";
import {
  CONTAINERD_CONFIG,
  DOCKER_RESTART,
  containerdHostsToml,
  containerdScript,
  dockerDaemonJson,
  k3sRegistriesYaml,
  k3sRewriteExample,
  mirrorSite,
  needsInsecure,
  podmanRegistriesConf,
  prefixExamples,
  type MirrorSite,
} from "./snippets.ts";

export interface LandingOptions {
  mirrorUrl: string;
  registries: readonly ServedRegistry[];
  searchEnabled: boolean;
  version: string;
}

let codeId = 0;

/** A titled code block with a copy button (the client copies the <pre>'s text). */
export function codeBlock(title: string, text: string, id = `code-${++codeId}`): Html {
  return html`<div class="code">
<div class="code-head"><span class="code-title">${title}</span><button type="button" class="copy" data-copy="${id}">Copy</button></div>
<pre id="${id}"><code>${text}</code></pre>
</div>`;
}

export function renderLanding(o: LandingOptions): string {
  codeId = 0;
  const site = mirrorSite(o.mirrorUrl, o.registries);
  const example = toMirrorReference("nginx", site.host, o.registries);
  const names = o.registries.map((r) => r.name);
  const body = html`<main class="wrap landing">
<section class="hero">
  <p class="eyebrow">Pull-through registry mirror</p>
  <h1>Pull images through <span class="accent" id="mirror-host">${site.host}</span></h1>
  <p class="lead">This mirror caches images from ${listOf(names)}. The first pull of an image fetches it from upstream; every later pull is served from the cache — also when the upstream is down or rate-limiting.</p>
  <div class="card converter" id="converter">
    <label for="ref-input" class="label">Turn an image reference into its mirror reference</label>
    <input id="ref-input" class="input" type="text" autocomplete="off" autocapitalize="off" spellcheck="false" placeholder="nginx:1.27 · ghcr.io/owner/image:tag · registry.k8s.io/pause:3.9">
    <div class="ref-result" id="ref-result" aria-live="polite">
      <code id="ref-output" class="ref-output">${example.ok ? example.mirror : ""}</code>
      <button type="button" class="copy primary" id="ref-copy" data-copy="ref-output">Copy</button>
    </div>
    <p class="hint" id="ref-note">Example: <code>nginx</code> → <code>${example.ok ? example.mirror : ""}</code>. Pull it with <code>docker pull</code>, <code>podman pull</code> or <code>nerdctl pull</code>.</p>
  </div>
</section>
${o.searchEnabled ? searchSection(site) : ""}
<nav class="toc" aria-label="Client setup">
  <a href="#docker">Docker</a><a href="#containerd">containerd</a><a href="#podman">Podman</a><a href="#kubernetes">Kubernetes / k3s</a><a href="#prefix">Prefix pulls</a>
</nav>
${dockerSection(site)}
${containerdSection(site)}
${podmanSection(site)}
${kubernetesSection(site)}
${prefixSection(site)}
</main>`;
  return page({
    title: `ferry · ${site.host}`,
    active: "home",
    body,
    scripts: ["/assets/landing-client.js"],
    data: { "mirror-host": site.host, "mirror-url": site.url, registries: JSON.stringify(o.registries.map((r) => ({ name: r.name, hosts: r.hosts }))) },
    version: o.version,
  });
}

function listOf(names: string[]): Html {
  const items = names.map((n) => html`<strong>${n}</strong>`);
  if (items.length <= 1) return html`${items}`;
  return html`${items.slice(0, -1).map((item, i) => html`${i ? ", " : ""}${item}`)} and ${items.at(-1)}`;
}

function searchSection(site: MirrorSite): Html {
  return html`<section class="card search" id="search">
  <h2>Search Docker Hub</h2>
  <form id="search-form" class="search-form" action="/v1/search" method="get" role="search">
    <input id="search-q" class="input" type="search" name="q" placeholder="nginx, postgres, grafana…" autocomplete="off" required maxlength="255" aria-label="Search term">
    <input type="hidden" name="n" value="25">
    <button type="submit" class="button primary">Search</button>
  </form>
  <p class="hint">The same search as <code>docker search ${site.host}/nginx</code>, relayed to Docker Hub's index by this mirror.</p>
  <div id="search-results" class="search-results" aria-live="polite"></div>
</section>`;
}

function section(id: string, title: string, content: Html): Html {
  return html`<section class="card setup" id="${id}"><h2><a href="#${id}" class="anchor">${title}</a></h2>${content}</section>`;
}

function dockerSection(site: MirrorSite): Html {
  return section(
    "docker",
    "Docker",
    html`<p>Add the mirror to <code>/etc/docker/daemon.json</code> (merge with what is there), then restart the daemon:</p>
${codeBlock("/etc/docker/daemon.json", dockerDaemonJson(site), "snippet-daemon-json")}
${codeBlock("shell", `${DOCKER_RESTART}\n`, "snippet-docker-restart")}
<p>Then <code>docker pull alpine</code> or <code>docker pull grafana/grafana</code> go through the mirror. Docker uses <code>registry-mirrors</code> for Docker Hub only: pull other registries <a href="#prefix">by prefix</a>.${needsInsecure(site) ? html` The mirror speaks plain HTTP, so it is listed in <code>insecure-registries</code> too.` : ""}</p>`,
  );
}

function containerdSection(site: MirrorSite): Html {
  const first = site.registries[0]?.name ?? "docker.io";
  return section(
    "containerd",
    "containerd (nerdctl, Kubernetes nodes)",
    html`<p>containerd reads one <code>hosts.toml</code> per registry from its certs.d directory. For ${html`<code>${first}</code>`}:</p>
${codeBlock(`/etc/containerd/certs.d/${first}/hosts.toml`, containerdHostsToml(site, first), "snippet-hosts-toml")}
<p>All ${site.registries.length} registries this mirror serves at once:</p>
${codeBlock("shell", containerdScript(site), "snippet-containerd-all")}
<p>containerd 1.x also needs the directory named in its config; then <code>sudo systemctl restart containerd</code>. containerd tells the mirror which registry it means (<code>?ns=</code>), so image names stay as they are.</p>
${codeBlock("/etc/containerd/config.toml", CONTAINERD_CONFIG, "snippet-containerd-config")}`,
  );
}

function podmanSection(site: MirrorSite): Html {
  return section(
    "podman",
    "Podman, Buildah, Skopeo, CRI-O",
    html`<p>Add a mirror per registry to <code>/etc/containers/registries.conf</code> (or a file in <code>registries.conf.d/</code>). The mirror location carries the registry as a path prefix:</p>
${codeBlock("/etc/containers/registries.conf", podmanRegistriesConf(site), "snippet-registries-conf")}`,
  );
}

function kubernetesSection(site: MirrorSite): Html {
  const rewriteFor = site.registries.find((r) => r.name !== "docker.io")?.name ?? "ghcr.io";
  return section(
    "kubernetes",
    "Kubernetes and k3s",
    html`<p>Nodes that run containerd (kubeadm, EKS, GKE, …) use the <a href="#containerd">containerd</a> setup on every node. k3s and RKE2 generate it from <code>/etc/rancher/k3s/registries.yaml</code> (RKE2: <code>/etc/rancher/rke2/registries.yaml</code>):</p>
${codeBlock("/etc/rancher/k3s/registries.yaml", k3sRegistriesYaml(site), "snippet-k3s")}
${codeBlock("shell", "sudo systemctl restart k3s   # k3s-agent on agent nodes\n", "snippet-k3s-restart")}
<p>A containerd too old to send <code>?ns=</code> can name the registry in the path with <code>rewrite</code> instead:</p>
${codeBlock("registries.yaml (rewrite)", k3sRewriteExample(site, rewriteFor), "snippet-k3s-rewrite")}`,
  );
}

function prefixSection(site: MirrorSite): Html {
  const rows = prefixExamples(site).map(
    (e, i) => html`<li class="prefix-row">
<div class="prefix-registry">${e.registry}</div>
<div class="prefix-main">
  <div class="cmd"><code id="prefix-${i}">docker pull ${e.mirror}</code><button type="button" class="copy small" data-copy="prefix-${i}">Copy</button></div>
  <div class="muted small">instead of <code>${e.upstream}</code>${e.aliases.map((a) => html` · or <code>${a}</code>`)}</div>
</div>
</li>`,
  );
  return section(
    "prefix",
    "Explicit prefix pulls (any client)",
    html`<p>Every client can pull through the mirror by naming it: <code>${site.host}/&lt;registry&gt;/&lt;image&gt;</code>. Docker Hub images need no registry part (<code>${site.host}/redis</code> works too: <code>library/</code> is added).</p>
<ul class="prefix-list">${rows}</ul>`,
  );
}

export const PLAIN_TEXT_ANSWER = `ferry: a pull-through registry mirror.\nPoint Docker's "registry-mirrors" at this URL, or pull <this host>/<registry>/<image>.\n`;

