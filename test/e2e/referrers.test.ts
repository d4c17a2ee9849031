// Issue 19.1, referrers: GET /v2/<name>/referrers/<digest> goes through ferry's tiers like a
// manifest. No registry with the referrers API installs here (Debian's distribution 2.8 has
// none) and no Debian package speaks it (oras, cosign and notation are not packaged;
// skopeo, podman, ctr and docker don't ask for referrers), so the upstream is the harness
// registry behind a small referrers front written from the spec's text
// (test/harness/referrers.ts), and the client is plain HTTP, as cosign/notation send it.
// Distribution 2.8 itself stands for a registry without the API: its 404 is passed on, and
// the `sha256-<hex>.sig` tag-schema fallback is an ordinary tag.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { MT_OCI_INDEX, pushArtifact, startReferrersFront, type Descriptor, type ReferrersFront } from "../harness/referrers.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";
import { ACCEPT, hubRegistry, OTHER_REGISTRIES_OFF, sha256 } from "../harness/oci.ts";

const SIG = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM = "application/spdx+json";
let upstream: Upstream;
let front: ReferrersFront;
let ferry: FerryProcess;
let image: BuiltImage;
let subject: Descriptor;
let sig: Awaited<ReturnType<typeof pushArtifact>>;
let sbom: Awaited<ReturnType<typeof pushArtifact>>;

beforeAll(async () => {
  upstream = await startUpstream();
  image = await fiveLayer({ seed: "referrers" });
  await upstream.push(image, "library/signed:latest");
  subject = { mediaType: image.mediaType, digest: image.manifestDigest, size: image.manifestSize };
  sig = await pushArtifact(upstream, "library/signed", { subject, artifactType: SIG, payload: "signature", annotations: { "dev.ferry.test": "sig" } });
  sbom = await pushArtifact(upstream, "library/signed", { subject, artifactType: SBOM, payload: '{"spdxVersion":"SPDX-2.3"}' });
  front = await startReferrersFront(upstream);
  ferry = await startFerry({ config: `${OTHER_REGISTRIES_OFF}\n${hubRegistry(front.url)}` });
}, 180_000);

afterAll(async () => {
  await ferry?.stop();
  await front?.stop();
  await upstream?.stop();
});

const referrersAsked = () => front.log.filter((e) => e.path.includes("/referrers/")).length;

async function index(r: Response): Promise<{ schemaVersion: number; mediaType: string; manifests: Descriptor[] }> {
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe(MT_OCI_INDEX);
  return (await r.json()) as { schemaVersion: number; mediaType: string; manifests: Descriptor[] };
}

describe("referrers", () => {
  test("the upstream's index is passed through, then served from cache within referrers_ttl", async () => {
    const before = referrersAsked();
    const r = await fetch(`${ferry.url}/v2/library/signed/referrers/${subject.digest}`);
    expect(r.headers.get("x-ferry-cache")).toBe("miss");
    const body = await index(r);
    expect(body.schemaVersion).toBe(2);
    expect(body.manifests.map((d) => d.digest).sort()).toEqual([sig.digest, sbom.digest].sort());
    expect(body.manifests.find((d) => d.digest === sig.digest)).toEqual({ mediaType: sig.mediaType, digest: sig.digest, size: sig.size, artifactType: SIG, annotations: { "dev.ferry.test": "sig" } });
    const again = await fetch(`${ferry.url}/v2/library/signed/referrers/${subject.digest}`);
    expect(again.headers.get("x-ferry-cache")).toBe("hit");
    expect((await index(again)).manifests.length).toBe(2);
    expect(referrersAsked() - before).toBe(1);
  });

  test("artifactType filter: OCI-Filters-Applied is kept", async () => {
    const r = await fetch(`${ferry.url}/v2/library/signed/referrers/${subject.digest}?artifactType=${encodeURIComponent(SBOM)}`);
    expect(r.headers.get("oci-filters-applied")).toBe("artifactType");
    expect((await index(r)).manifests.map((d) => d.digest)).toEqual([sbom.digest]);
  });

  test("pages: the upstream's Link is rewritten to the mirror's own path, prefix and ns", async () => {
    const sorted = [sig.digest, sbom.digest].sort();
    for (const [path, query] of [["/v2/library/signed", ""], ["/v2/docker.io/library/signed", ""], ["/v2/signed", "&ns=docker.io"]] as const) {
      const first = await fetch(`${ferry.url}${path}/referrers/${subject.digest}?n=1${query}`);
      expect((await index(first)).manifests.map((d) => d.digest)).toEqual([sorted[0]!]);
      const link = first.headers.get("link");
      const m = /^<([^>]+)>; rel="next"$/.exec(link ?? "");
      expect(m?.[1]?.startsWith(`${path}/referrers/${subject.digest}?`)).toBe(true);
      if (query) expect(new URL(m![1]!, ferry.url).searchParams.get("ns")).toBe("docker.io");
      const second = await fetch(new URL(m![1]!, ferry.url));
      expect((await index(second)).manifests.map((d) => d.digest)).toEqual([sorted[1]!]);
      expect(second.headers.get("link")).toBeNull();
    }
  });

  test("the referrers themselves are manifests and blobs like any other", async () => {
    const m = await fetch(`${ferry.url}/v2/library/signed/manifests/${sig.digest}`, { headers: { Accept: `${ACCEPT}, application/vnd.oci.image.manifest.v1+json` } });
    expect(m.status).toBe(200);
    expect(sha256(await m.arrayBuffer())).toBe(sig.digest);
    const b = await fetch(`${ferry.url}/v2/library/signed/blobs/${sig.payloadDigest}`);
    expect(b.status).toBe(200);
    expect(await b.text()).toBe("signature");
  });

  test("a bad digest is a 400 DIGEST_INVALID; nothing is asked upstream", async () => {
    const before = referrersAsked();
    for (const bad of ["latest", "sha256:123", `sha256:${"Z".repeat(64)}`]) {
      const r = await fetch(`${ferry.url}/v2/library/signed/referrers/${bad}`);
      expect(r.status).toBe(400);
      expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("DIGEST_INVALID");
    }
    expect(referrersAsked()).toBe(before);
  });

  test("an upstream without the API (distribution 2.8): its 404 is passed on, and the sha256-<hex>.sig tag works", async () => {
    const direct = await startFerry({ config: `${OTHER_REGISTRIES_OFF}\n${hubRegistry(upstream.url)}` });
    try {
      const r = await fetch(`${direct.url}/v2/library/signed/referrers/${subject.digest}`);
      expect(r.status).toBe(404);
      expect(((await r.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("MANIFEST_UNKNOWN");
      const tag = `${subject.digest.replace(":", "-")}.sig`;
      const fallback = await pushArtifact(upstream, "library/signed", { subject, artifactType: SIG, payload: "tag-schema signature", tag });
      const t = await fetch(`${direct.url}/v2/library/signed/manifests/${tag}`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } });
      expect(t.status).toBe(200);
      expect(t.headers.get("docker-content-digest")).toBe(fallback.digest);
      expect(sha256(await t.arrayBuffer())).toBe(fallback.digest);
    } finally {
      await direct.stop();
    }
  }, 60_000);

  test("while the upstream fails, the cached answer is served (stale); with nothing cached, an OCI 5xx, never 500", async () => {
    const brief = await startFerry({ cacheConfig: 'referrers_ttl = "0s"', config: `${OTHER_REGISTRIES_OFF}\n${hubRegistry(front.url, 'failure_cooldown = "1ms"')}` });
    try {
      const fresh = await fetch(`${brief.url}/v2/library/signed/referrers/${subject.digest}`);
      const bytes = await fresh.arrayBuffer();
      expect(fresh.status).toBe(200);
      for (const status of [503, 429]) {
        front.setFailure(status);
        const before = front.log.length;
        const stale = await fetch(`${brief.url}/v2/library/signed/referrers/${subject.digest}`);
        expect(stale.status).toBe(200);
        expect(stale.headers.get("x-ferry-cache")).toBe("stale");
        expect(sha256(await stale.arrayBuffer())).toBe(sha256(bytes));
        expect(front.log.length).toBeGreaterThan(before); // it did ask
        const none = await fetch(`${brief.url}/v2/library/signed/referrers/sha256:${"0".repeat(64)}`);
        expect([429, 502, 503]).toContain(none.status);
        expect(((await none.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe(status === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE");
        front.setFailure(null);
      }
    } finally {
      front.setFailure(null);
      await brief.stop();
    }
  }, 60_000);
});
