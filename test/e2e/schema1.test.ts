// Issue 15 item 14: signed schema1 manifests. Their digest is that of the JWS payload (the
// manifest without its "signatures"), not of the body. The fixture is signed in the test
// the way libtrust does it (ES256 over protected.payload, formatLength/formatTail in the
// protected header, "signatures" spliced in pretty-printed) with node:crypto: there is no
// libtrust for JavaScript. distribution 2.8 (compatibility.schema1 on) verifies the
// signature when it is pushed, so the fixture is proven correct by the real registry.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { startFerry } from "../harness/ferry.ts";
import { fiveLayer, type BuiltImage } from "../harness/images.ts";
import { hubRegistry } from "../harness/oci.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

const SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws";
let upstream: Upstream;
let five: BuiltImage;

beforeAll(async () => {
  upstream = await startUpstream({ schema1: true });
  five = await fiveLayer({ seed: "schema1" });
  await upstream.push(five, "library/five:latest");
}, 120_000);

afterAll(async () => {
  await upstream?.stop();
});

const b64url = (data: Uint8Array | string) => Buffer.from(data).toString("base64url");

/** libtrust's key ID: base32 of the first 240 bits of sha256(SPKI DER), in groups of four. */
function keyId(spkiDer: Buffer): string {
  const hash = createHash("sha256").update(spkiDer).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const byte of hash) bits += byte.toString(2).padStart(8, "0");
  let s = "";
  for (let i = 0; i + 5 <= bits.length; i += 5) s += alphabet[parseInt(bits.slice(i, i + 5), 2)];
  return s.match(/.{4}/g)!.join(":");
}

/** A schema1 manifest signed as `docker push` (libtrust) signed them. */
function signSchema1(manifest: unknown): { body: Uint8Array; payload: Uint8Array } {
  const content = Buffer.from(JSON.stringify(manifest, null, 3));
  const close = content.lastIndexOf("}");
  let last = close - 1;
  while (/\s/.test(String.fromCharCode(content[last]!))) last--;
  const formatLength = last + 1;
  const formatTail = content.subarray(formatLength);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  const protectedHeader = b64url(JSON.stringify({ formatLength, formatTail: b64url(formatTail), time: new Date().toISOString().replace(/\.\d+Z$/, "Z") }));
  const signature = sign("sha256", Buffer.from(`${protectedHeader}.${b64url(content)}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
  const signatures = [{ header: { jwk: { crv: "P-256", kid: keyId(publicKey.export({ type: "spki", format: "der" })), kty: "EC", x: jwk.x, y: jwk.y }, alg: "ES256" }, signature: b64url(signature), protected: protectedHeader }];
  const pretty = JSON.stringify(signatures, null, 3).replace(/\n/g, "\n   ");
  const body = Buffer.concat([content.subarray(0, formatLength), Buffer.from(`,\n   "signatures": ${pretty}`), formatTail]);
  return { body: new Uint8Array(body), payload: new Uint8Array(content) };
}

describe("signed schema1 manifests", () => {
  test("are served under the registry's digest (that of the JWS payload), by tag and by digest, signed payload intact", async () => {
    const layers = five.manifests[0]!.layers;
    const manifest = {
      schemaVersion: 1,
      name: "library/five",
      tag: "old",
      architecture: "amd64",
      fsLayers: layers.map((l) => ({ blobSum: l.digest })).reverse(),
      history: layers.map((l, i) => ({ v1Compatibility: JSON.stringify({ id: createHash("sha256").update(l.digest).digest("hex"), ...(i ? { parent: createHash("sha256").update(layers[i - 1]!.digest).digest("hex") } : {}) }) })).reverse(),
    };
    const { body, payload } = signSchema1(manifest);
    const token = await upstream.token("repository:library/five:pull,push", { username: "pusher", password: "pushpass" });
    const put = await fetch(`${upstream.registryUrl}/v2/library/five/manifests/old`, { method: "PUT", headers: { Authorization: `Bearer ${token}`, "Content-Type": SCHEMA1_SIGNED }, body });
    expect({ status: put.status, body: put.status === 201 ? "" : await put.text() }).toEqual({ status: 201, body: "" });
    const digest = put.headers.get("docker-content-digest")!;
    expect(digest).toBe(`sha256:${createHash("sha256").update(payload).digest("hex")}`); // the payload's, not the body's

    const ferry = await startFerry({ config: hubRegistry(upstream.url) });
    try {
      const bodies: Uint8Array[] = [];
      for (const ref of ["old", digest, "old"]) {
        const r = await fetch(`${ferry.url}/v2/library/five/manifests/${ref}`, { headers: { Accept: SCHEMA1_SIGNED } });
        expect({ ref, status: r.status, body: r.status === 200 ? "" : await r.text() }).toEqual({ ref, status: 200, body: "" });
        expect(r.headers.get("docker-content-digest")).toBe(digest);
        expect(r.headers.get("content-type")).toBe(SCHEMA1_SIGNED);
        const got = new Uint8Array(await r.arrayBuffer());
        // distribution re-signs schema1 on every GET (its own key, the time of the request), so
        // bodies differ between upstream GETs; the signed payload is what must be the same.
        const { signatures, ...unsigned } = JSON.parse(new TextDecoder().decode(got)) as { signatures: unknown[] };
        expect(unsigned).toEqual(manifest);
        expect(signatures.length).toBeGreaterThan(0);
        bodies.push(got);
      }
      expect(bodies[1]).toEqual(bodies[0]!); // served from the cache, as cached
      expect(bodies[2]).toEqual(bodies[0]!);
    } finally {
      await ferry.stop();
    }
  }, 120_000);
});
