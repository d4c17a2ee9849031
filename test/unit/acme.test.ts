// Issue 20: [server.acme] config, the HTTP-01 responder, and the certificate manager's
// start-up with a stored certificate (the order flow itself runs against pebble in
// test/e2e/acme.test.ts).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalLocks } from "../../src/cache/locks.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/observe/logger.ts";
import { CertificateManager } from "../../src/tls/cert-manager.ts";
import { FsCertStorage } from "../../src/tls/cert-storage.ts";
import { ChallengeResponder } from "../../src/tls/challenge-responder.ts";
import { renderCache } from "../../src/ui/dashboard-render.ts";

const scratch = mkdtempSync(join(tmpdir(), "ferry-acme-unit-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("[server.acme] config", () => {
  test("defaults: Let's Encrypt, storage under the cache dir, redirect on, the registries' hosts included", () => {
    const c = parseConfig(`[server]\ntls_listen = ":443"\n[server.acme]\ndomains = ["Mirror.Example.com"]\n[cache]\ndir = "/var/cache/ferry/"\n[[registry]]\nname = "ghcr.io"\nhosts = ["ghcr.mirror.example.com:443", "mirror.example.com"]`);
    expect(c.server.tls).toEqual({
      hostname: "0.0.0.0",
      port: 443,
      acme: {
        domains: ["mirror.example.com", "ghcr.mirror.example.com"],
        email: undefined,
        directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
        eab: undefined,
        storageDir: "/var/cache/ferry/acme",
        caFile: undefined,
        redirectHttp: true,
        renewBeforeMs: 30 * 86_400_000,
        retryMinMs: 10_000,
        retryMaxMs: 3_600_000,
      },
    });
  });

  test("every key", () => {
    const c = parseConfig(`[server.acme]\ndomains = ["a.example.com"]\nemail = "ops@example.com"\ndirectory_url = "https://acme-staging-v02.api.letsencrypt.org/directory"\neab_kid = "kid-1"\neab_hmac_key = "aGVsbG8"\nstorage = "/etc/ferry/acme"\nca_file = "/etc/ferry/ca.pem"\nredirect_http = false\nrenew_before = "10d"\nretry_min = "5s"\nretry_max = "10m"`);
    expect(c.server.tls?.port).toBe(5443);
    expect(c.server.tls?.acme).toMatchObject({ email: "ops@example.com", eab: { kid: "kid-1", hmacKey: "aGVsbG8" }, storageDir: "/etc/ferry/acme", caFile: "/etc/ferry/ca.pem", redirectHttp: false, renewBeforeMs: 864_000_000, retryMinMs: 5000, retryMaxMs: 600_000 });
  });
  // Invalid [server.acme] keys are in config.test.ts's table of invalid configs.
});

describe("HTTP-01 responder", () => {
  test("answers a published token with its key authorization, and nothing else", async () => {
    const responder = new ChallengeResponder();
    await responder.publish("tok_EN-1", "tok_EN-1.thumbprint");
    const hit = await responder.respond("/.well-known/acme-challenge/tok_EN-1");
    expect(hit?.status).toBe(200);
    expect(await hit?.text()).toBe("tok_EN-1.thumbprint");
    expect(await responder.respond("/v2/")).toBeUndefined();
    expect((await responder.respond("/.well-known/acme-challenge/other"))?.status).toBe(404);
    expect((await responder.respond("/.well-known/acme-challenge/..%2F..%2Fetc"))?.status).toBe(404);
    await responder.withdraw("tok_EN-1");
    expect((await responder.respond("/.well-known/acme-challenge/tok_EN-1"))?.status).toBe(404);
  });

  test("a token another replica published (shared storage) is answered too", async () => {
    const storage = new FsCertStorage(join(scratch, "shared"));
    await new ChallengeResponder(storage).publish("shared-token", "shared-token.key");
    const other = await new ChallengeResponder(storage).respond("/.well-known/acme-challenge/shared-token");
    expect(await other?.text()).toBe("shared-token.key");
  });
});

describe("certificate manager", () => {
  test("a stored, still-valid certificate is served at start, with renewal planned a third of its lifetime ahead", async () => {
    const dir = join(scratch, "store");
    const gen = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3", "-subj", "/CN=a.example.com", "-addext", "subjectAltName=DNS:a.example.com", "-keyout", join(scratch, "k.pem"), "-out", join(scratch, "c.pem")]);
    expect(gen.exitCode).toBe(0);
    const pem = { cert: await Bun.file(join(scratch, "c.pem")).text(), key: await Bun.file(join(scratch, "k.pem")).text() };
    const storage = new FsCertStorage(dir);
    await storage.write("certificate.json", JSON.stringify(pem));
    const config = parseConfig(`[server.acme]\ndomains = ["a.example.com"]\ndirectory_url = "https://127.0.0.1:1/dir"`);
    const served: string[] = [];
    const manager = new CertificateManager(config.server.tls!.acme!, storage, new ChallengeResponder(), new LocalLocks(), createLogger("silent"), (p) => served.push(p.cert));
    await manager.start();
    manager.stop();
    expect(served).toEqual([pem.cert]);
    const s = manager.state;
    expect(s).toMatchObject({ source: "acme", status: "valid", domains: ["a.example.com"], failures: 0, ordering: false });
    const lifetime = Date.parse(s.notAfter!) - Date.parse(s.notBefore!);
    expect(Date.parse(s.renewAt!)).toBe(Date.parse(s.notAfter!) - lifetime / 3);
  });
});

describe("dashboard certificate row", () => {
  test("shows state and expiry, and escapes the CA's error text", () => {
    const base = { bytes: 0, blobs: 0, maxBytes: null };
    const out = renderCache({ cache: base, tls: { source: "acme", status: "valid", domains: ["a.example.com"], notAfter: "2027-01-01T00:00:00.000Z", failures: 2, lastError: "<script>x</script>" } }).value;
    expect(out).toContain("Certificate");
    expect(out).toContain("2027-01-01T00:00:00.000Z");
    expect(out).toContain("2 failed");
    expect(out).not.toContain("<script>");
    expect(renderCache({ cache: base, tls: null }).value).toContain("no HTTPS");
  });
});
