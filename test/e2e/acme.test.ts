// Issue 20: HTTPS by itself. ferry gets its certificate from Debian's pebble (a real ACME
// server that validates HTTP-01 for real against ferry's plain listener), serves the
// registry API over HTTPS with it, renews it in place during a download, keeps serving
// while the CA is down, shares one order between replicas through Redis, and real
// clients pull through https://localhost:<port> trusting pebble's root.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ctrPull, podmanPull, startDockerd } from "../harness/clients.ts";
import { startFerry, type FerryProcess } from "../harness/ferry.ts";
import { bigLayer, fiveLayer, type BuiltImage } from "../harness/images.ts";
import { startPebble, type Pebble } from "../harness/pebble.ts";
import { freePort, run, waitFor } from "../harness/proc.ts";
import { startRedis, type RedisServer } from "../harness/redis.ts";
import { startUpstream, type Upstream } from "../harness/upstream.ts";

const NAME = "localhost"; // resolves to 127.0.0.1 for pebble's VA and for every client
let upstream: Upstream;
let img: { big: BuiltImage; small: BuiltImage };
const scratch = mkdtempSync(join(tmpdir(), "ferry-acme-"));
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  img = { big: await bigLayer({ seed: "acme-renew", sizeMiB: 16 }), small: await fiveLayer({ seed: "acme-clients" }) };
  await upstream.push(img.big, "library/big:latest");
  await upstream.push(img.small, "library/small:latest");
}, 180_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await upstream?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

interface Site {
  ferry: FerryProcess;
  tlsPort: number;
}

async function startAcmeFerry(pebble: Pebble, port: number, opts: { cacheDir?: string; extra?: string; acme?: string } = {}): Promise<Site> {
  const tlsPort = await freePort();
  const ferry = await startFerry({
    port,
    cacheDir: opts.cacheDir,
    server: `tls_listen = "127.0.0.1:${tlsPort}"`,
    config: [
      `[server.acme]\ndomains = ["${NAME}"]\nemail = "ops@example.com"\ndirectory_url = "${pebble.directoryUrl}"\nca_file = "${pebble.directoryCaFile}"\nretry_min = "1s"\nretry_max = "2s"\n${opts.acme ?? ""}`,
      `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true\ntimeout = "10s"`,
      opts.extra ?? "",
    ].join("\n"),
  });
  cleanups.push(() => ferry.stop("SIGKILL"));
  return { ferry, tlsPort };
}

async function tlsStatus(ferry: FerryProcess): Promise<Record<string, unknown> | null> {
  return ((await (await fetch(`${ferry.url}/api/status`)).json()) as { tls: Record<string, unknown> | null }).tls;
}

async function waitValid(ferry: FerryProcess, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return waitFor(async () => {
    const s = await tlsStatus(ferry);
    return s?.status === "valid" ? s : undefined;
  }, { timeoutMs, intervalMs: 200, what: "a valid certificate", onTimeout: () => ferry.logs().split("\n").filter((l) => l.includes("acme")).slice(-5).join("\n") });
}

/** The serial and expiry of the certificate a new TLS connection gets, verified against `root`. */
async function served(tlsPort: number, rootFile: string): Promise<{ serial: string; verify: string }> {
  const script = `out=$(openssl s_client -connect 127.0.0.1:${tlsPort} -servername ${NAME} -CAfile ${rootFile} -verify_hostname ${NAME} -verify_return_error </dev/null 2>/dev/null); echo "$out" | grep "Verify return code"; echo "$out" | openssl x509 -noout -serial`;
  const r = await run(["bash", "-c", script], { allowFail: true, timeoutMs: 10_000 });
  const [verify = "", serial = ""] = r.stdout.trim().split("\n");
  return { serial: serial.trim(), verify: verify.trim() };
}

/** curl over HTTPS with only pebble's root trusted: status code and body. */
async function curlHttps(tlsPort: number, path: string, rootFile: string): Promise<{ code: number; status: string; body: string }> {
  const r = await run(["curl", "-sS", "--cacert", rootFile, "--resolve", `${NAME}:${tlsPort}:127.0.0.1`, "-w", "\n%{http_code}", `https://${NAME}:${tlsPort}${path}`], { allowFail: true, timeoutMs: 30_000 });
  const lines = r.stdout.split("\n");
  return { code: r.code, status: lines.pop() ?? "", body: lines.join("\n") + r.stderr };
}

async function saveRoot(pebble: Pebble, name: string): Promise<string> {
  const file = join(scratch, `${name}-root.pem`);
  writeFileSync(file, await pebble.root());
  return file;
}

describe("ACME certificates from pebble", () => {
  test("ferry obtains a certificate at start and serves /v2/ over HTTPS with it; HTTP redirects; status and metric show it", async () => {
    const port = await freePort();
    const pebble = await startPebble({ httpPort: port });
    cleanups.push(() => pebble.dispose());
    const { ferry, tlsPort } = await startAcmeFerry(pebble, port);
    const state = await waitValid(ferry);
    expect(state).toMatchObject({ source: "acme", status: "valid", domains: [NAME], failures: 0, ordering: false });
    expect(String(state.issuer)).toContain("Pebble Intermediate CA");
    expect(pebble.issued()).toBe(1);
    const root = await saveRoot(pebble, "issue");

    // The chain verifies against pebble's root (fetched from its management API) for the name.
    const cert = await served(tlsPort, root);
    expect(cert.verify).toBe("Verify return code: 0 (ok)");
    const v2 = await curlHttps(tlsPort, "/v2/", root);
    expect({ code: v2.code, status: v2.status }).toEqual({ code: 0, status: "200" });
    const manifest = await run(["curl", "-sS", "--cacert", root, "--resolve", `${NAME}:${tlsPort}:127.0.0.1`, "-H", `Accept: ${img.small.mediaType}`, "-o", "/dev/null", "-w", "%{http_code} %header{docker-content-digest}", `https://${NAME}:${tlsPort}/v2/library/small/manifests/latest`], { allowFail: true });
    expect(manifest.stdout).toBe(`200 ${img.small.manifestDigest}`);

    // Plain HTTP: registry API requests for the certificate's name go to HTTPS; the rest stays.
    const redirected = await fetch(`http://${NAME}:${port}/v2/library/small/manifests/latest?x=1`, { redirect: "manual" });
    expect(redirected.status).toBe(308);
    expect(redirected.headers.get("location")).toBe(`https://${NAME}:${tlsPort}/v2/library/small/manifests/latest?x=1`);
    expect((await fetch(`${ferry.url}/v2/`)).status).toBe(200); // by IP: no name to redirect to
    expect((await fetch(`http://${NAME}:${port}/healthz`)).status).toBe(200);
    // An unknown challenge token is a 404, never the app.
    expect((await fetch(`${ferry.url}/.well-known/acme-challenge/nope`)).status).toBe(404);

    const metrics = await (await fetch(`${ferry.url}/metrics`)).text();
    const expiry = /^ferry_tls_certificate_expiry_timestamp_seconds\{source="acme"\} (\d+)/m.exec(metrics)?.[1];
    expect(Number(expiry) * 1000).toBe(Date.parse(String(state.notAfter)));
  }, 90_000);

  test("a short-lived certificate is renewed in place while a download on the old one runs to the end; with the CA gone it is still served", async () => {
    const port = await freePort();
    // 30 s certificates: renewal is due after 20 s (two thirds of the lifetime).
    const pebble = await startPebble({ httpPort: port, validitySeconds: 30 });
    cleanups.push(() => pebble.dispose());
    const { ferry, tlsPort } = await startAcmeFerry(pebble, port);
    await waitValid(ferry);
    const root = await saveRoot(pebble, "renew");
    const first = await served(tlsPort, root);
    expect(first.verify).toBe("Verify return code: 0 (ok)");

    // A 16 MiB layer read at 400 KiB/s takes ~40 s, longer than the renewal is away.
    const layer = img.big.manifests[0]!.layers[0]!;
    const out = join(scratch, "renew-layer");
    const download = Bun.spawn(["curl", "-sS", "--fail", "--limit-rate", "400k", "--cacert", root, "--resolve", `${NAME}:${tlsPort}:127.0.0.1`, "-o", out, `https://${NAME}:${tlsPort}/v2/library/big/blobs/${layer.digest}`], { stdout: "pipe", stderr: "pipe" });
    cleanups.push(async () => download.kill("SIGKILL"));
    const renewed = await waitFor(async () => {
      const now = await served(tlsPort, root);
      return now.serial && now.serial !== first.serial ? now : undefined;
    }, { timeoutMs: 40_000, intervalMs: 500, what: "a renewed certificate", onTimeout: () => ferry.logs().split("\n").filter((l) => l.includes("acme")).slice(-5).join("\n") });
    expect(renewed.verify).toBe("Verify return code: 0 (ok)");
    expect(download.exitCode).toBeNull(); // still downloading over the old listener's connection
    expect(pebble.issued()).toBeGreaterThanOrEqual(2);
    const code = await Promise.race([download.exited, Bun.sleep(60_000).then(() => -1)]);
    expect({ code, stderr: await new Response(download.stderr).text() }).toEqual({ code: 0, stderr: "" });
    expect(`sha256:${createHash("sha256").update(readFileSync(out)).digest("hex")}`).toBe(layer.digest);
    const v2 = await curlHttps(tlsPort, "/v2/", root);
    expect(v2.status).toBe("200");

    // The CA goes away before the next renewal: that order fails, the still-valid
    // certificate goes on being served, and the status says why.
    // The certificate in place is read only after a renewal has failed: an order that
    // finished just before the CA stopped may still swap the listener's certificate.
    await pebble.stop();
    const failedRenewals = (n: number) => waitFor(async () => {
      const st = await tlsStatus(ferry);
      return st && Number(st.failures) >= n ? st : undefined;
    }, { timeoutMs: 40_000, intervalMs: 250, what: `${n} failed renewal(s)`, onTimeout: () => ferry.logs().split("\n").filter((l) => l.includes("acme")).slice(-5).join("\n") });
    const cut = await failedRenewals(1); // may be an order the stop cut in the middle
    const last = await served(tlsPort, root);
    expect(last.verify).toBe("Verify return code: 0 (ok)");
    const failing = await failedRenewals(Number(cut.failures) + 1); // begun with the CA gone
    expect(failing).toMatchObject({ status: "valid", ordering: false });
    expect(String(failing.lastError)).toContain("unreachable");
    const still = await served(tlsPort, root);
    expect(still.verify).toBe("Verify return code: 0 (ok)");
    expect(still).toEqual(last);
    expect((await curlHttps(tlsPort, "/v2/", root)).status).toBe("200");
  }, 180_000);

  test("with the CA down ferry serves plain HTTP and retries with backoff; later it serves its stored certificate without the CA", async () => {
    const port = await freePort();
    const pebble = await startPebble({ httpPort: port });
    cleanups.push(() => pebble.dispose());
    await pebble.stop();
    const cacheDir = join(scratch, "ca-down-cache");
    let site = await startAcmeFerry(pebble, port, { cacheDir });
    // No certificate and no CA: the registry API still answers on plain HTTP.
    const plain = await fetch(`${site.ferry.url}/v2/library/small/manifests/latest`, { headers: { Accept: img.small.mediaType } });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("docker-content-digest")).toBe(img.small.manifestDigest);
    const failing = await waitFor(async () => {
      const s = await tlsStatus(site.ferry);
      return s && Number(s.failures) >= 2 ? s : undefined;
    }, { timeoutMs: 20_000, intervalMs: 200, what: "two failed orders" });
    expect(failing).toMatchObject({ status: "none", ordering: false });
    expect(String(failing.lastError)).toMatch(/ECONNREFUSED|connect|refused/i);
    expect(site.ferry.logs()).toContain("acme: certificate order failed; retrying");
    const noTls = await run(["curl", "-sS", "--max-time", "2", `https://${NAME}:${site.tlsPort}/v2/`], { allowFail: true });
    expect(noTls.code).not.toBe(0); // no TLS listener until there is a certificate

    // The CA comes back: the next retry gets the certificate, no restart.
    await pebble.start();
    await waitValid(site.ferry, 20_000);
    const root = await saveRoot(pebble, "ca-down");
    const before = await served(site.tlsPort, root);
    expect(before.verify).toBe("Verify return code: 0 (ok)");

    // CA down again, ferry restarted: the stored certificate is served at once.
    await pebble.stop();
    await site.ferry.stop();
    site = await startAcmeFerry(pebble, port, { cacheDir });
    const state = await waitValid(site.ferry, 5_000);
    expect(state.failures).toBe(0);
    const after = await served(site.tlsPort, root);
    expect(after).toEqual(before);
    expect((await curlHttps(site.tlsPort, "/v2/", root)).status).toBe("200");
    // `ferry check` shows the stored certificate's expiry, and the CA as down.
    const check2 = await run([join(import.meta.dir, "../../node_modules/.bin/bun"), join(import.meta.dir, "../../src/main.ts"), "check", "--config", join(site.ferry.dir, "config.toml")], { allowFail: true, timeoutMs: 60_000 });
    expect(check2.code).toBe(1);
    expect(check2.stdout).toMatch(new RegExp(`tls certificate +acme ${NAME} +ok +${NAME} until ${String(state.notAfter).replace(/\./g, "\\.")}`));
    expect(check2.stdout).toMatch(/acme directory +https:\/\/127\.0\.0\.1:\d+\/dir +FAIL/);
  }, 120_000);

  test("two replicas sharing Redis: one order, both serve the same certificate", async () => {
    const redis: RedisServer = await startRedis();
    cleanups.push(() => redis.dispose());
    const ports = [await freePort(), await freePort()];
    // Pebble validates on the first replica's port only: whichever replica orders, the
    // other may have to answer the challenge (tokens are shared through Redis).
    const pebble = await startPebble({ httpPort: ports[0]! });
    cleanups.push(() => pebble.dispose());
    const extra = `[redis]\nurl = "${redis.url}"\nlock_lease = "3s"`;
    const sites = await Promise.all(ports.map((p, i) => startAcmeFerry(pebble, p, { extra, cacheDir: join(scratch, `replica-${i}`) })));
    const states = await Promise.all(sites.map((s) => waitValid(s.ferry)));
    expect(states[0]!.notAfter).toBe(states[1]!.notAfter);
    expect(pebble.issued()).toBe(1);
    const root = await saveRoot(pebble, "replicas");
    const certs = await Promise.all(sites.map((s) => served(s.tlsPort, root)));
    expect(certs[0]!.verify).toBe("Verify return code: 0 (ok)");
    expect(certs[1]).toEqual(certs[0]!);
    const logs = sites.map((s) => s.ferry.logs());
    expect(logs.filter((l) => l.includes("acme: certificate issued")).length).toBe(1);
  }, 90_000);

  test("docker, ctr and podman pull through https://localhost:<port> with pebble's root installed as an operator would", async () => {
    const port = await freePort();
    const pebble = await startPebble({ httpPort: port });
    cleanups.push(() => pebble.dispose());
    const { ferry, tlsPort } = await startAcmeFerry(pebble, port);
    await waitValid(ferry);
    const rootPem = await pebble.root();
    const rootFile = await saveRoot(pebble, "clients");
    const mirror = `${NAME}:${tlsPort}`;

    // dockerd: registry-mirrors = ["https://…"], /etc/docker/certs.d/<host>/ca.crt, no insecure-registries.
    const dockerd = await startDockerd({ mirrors: [`https://${mirror}`], insecureRegistries: [], registryCAs: { [mirror]: rootPem } });
    cleanups.push(() => dockerd.stop());
    const pulled = await dockerd.pull("library/small:latest");
    expect({ code: pulled.code, err: pulled.code ? pulled.stderr.slice(-500) : "" }).toEqual({ code: 0, err: "" });
    expect(pulled.digest).toBe(img.small.manifestDigest);

    const ctr = await ctrPull({ ref: "docker.io/library/small:latest", hosts: { "docker.io": { url: `https://${mirror}`, ca: rootFile } } });
    expect({ code: ctr.code, err: ctr.code ? ctr.stderr.slice(-500) : "" }).toEqual({ code: 0, err: "" });
    expect(ctr.digest).toBe(img.small.manifestDigest);
    expect(ctr.requests.some((r) => r.url.startsWith(`https://${mirror}/v2/`))).toBe(true);

    // ctr and podman verify a loopback mirror's chain (dockerd treats 127.0.0.0/8 as
    // insecure by its own default): without pebble's root they refuse it.
    const untrusted = await ctrPull({ ref: "docker.io/library/small:latest", hosts: { "docker.io": { url: `https://${mirror}` } } });
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/x509|certificate signed by unknown authority/);
    const untrustedPodman = await podmanPull({ ref: "docker.io/library/small:latest", registries: [{ prefix: "docker.io", mirrors: [{ location: mirror }] }] });
    expect(untrustedPodman.code).not.toBe(0);
    expect(untrustedPodman.stderr).toMatch(/x509|certificate signed by unknown authority/);

    const podman = await podmanPull({ ref: "docker.io/library/small:latest", registries: [{ prefix: "docker.io", mirrors: [{ location: mirror }] }], registryCAs: { [mirror]: rootPem } });
    expect({ code: podman.code, err: podman.code ? podman.stderr.slice(-500) : "" }).toEqual({ code: 0, err: "" });
    expect(podman.digest).toBe(img.small.manifestDigest);
  }, 240_000);

  test("static tls_cert/tls_key: SIGHUP serves the replaced files to new connections, a download on the old certificate finishes", async () => {
    const dir = join(scratch, "static");
    await run(["mkdir", "-p", dir]);
    const makeCert = async (name: string) => {
      await run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`), "-days", "2", "-subj", `/CN=${name}`, "-addext", `subjectAltName=DNS:${NAME}`]);
      return { cert: readFileSync(join(dir, `${name}.crt`), "utf8"), key: readFileSync(join(dir, `${name}.key`), "utf8") };
    };
    const [a, b] = [await makeCert("cert-a"), await makeCert("cert-b")];
    writeFileSync(join(dir, "tls.crt"), a.cert);
    writeFileSync(join(dir, "tls.key"), a.key);
    const tlsPort = await freePort();
    const ferry = await startFerry({
      server: `tls_listen = "127.0.0.1:${tlsPort}"\ntls_cert = "${join(dir, "tls.crt")}"\ntls_key = "${join(dir, "tls.key")}"`,
      config: `[[registry]]\nname = "docker.io"\nendpoints = ["${upstream.url}"]\nallow_private_redirects = true`,
    });
    cleanups.push(() => ferry.stop("SIGKILL"));
    const subject = async () => (await run(["bash", "-c", `openssl s_client -connect 127.0.0.1:${tlsPort} -servername ${NAME} </dev/null 2>/dev/null | openssl x509 -noout -subject`], { allowFail: true })).stdout.trim();
    expect(await subject()).toBe("subject=CN = cert-a");
    const status = await tlsStatus(ferry);
    expect(status).toMatchObject({ source: "files", status: "valid", domains: [NAME] });

    const layer = img.big.manifests[0]!.layers[0]!;
    const out = join(dir, "layer");
    const download = Bun.spawn(["curl", "-sS", "--fail", "--limit-rate", "2M", "--cacert", join(dir, "cert-a.crt"), "--resolve", `${NAME}:${tlsPort}:127.0.0.1`, "-o", out, `https://${NAME}:${tlsPort}/v2/library/big/blobs/${layer.digest}`], { stdout: "pipe", stderr: "pipe" });
    cleanups.push(async () => download.kill("SIGKILL"));
    await waitFor(() => Bun.file(out).size > 0, { timeoutMs: 10_000, what: "the download to start" });

    // certbot-style renewal: the files are replaced, then ferry gets SIGHUP.
    writeFileSync(join(dir, "tls.crt"), b.cert);
    writeFileSync(join(dir, "tls.key"), b.key);
    process.kill(ferry.pid, "SIGHUP");
    await waitFor(async () => (await subject()) === "subject=CN = cert-b" || undefined, { timeoutMs: 10_000, what: "cert-b served", onTimeout: () => ferry.logs().slice(-1500) });
    expect(download.exitCode).toBeNull();
    const code = await Promise.race([download.exited, Bun.sleep(30_000).then(() => -1)]);
    expect({ code, stderr: await new Response(download.stderr).text() }).toEqual({ code: 0, stderr: "" });
    expect(`sha256:${createHash("sha256").update(readFileSync(out)).digest("hex")}`).toBe(layer.digest);
    expect(ferry.logs()).toContain("config reloaded");
  }, 90_000);
});
