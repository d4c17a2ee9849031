// Real HTTP clients (curl) against a handler served by Bun.serve over HTTP and HTTPS: for
// tests of response bodies that lend their chunks (a chunk reused once the sink pulls again).
import { join } from "node:path";
import { digestOf } from "../../../src/protocol/digest.ts";

export interface HttpAndHttps extends Disposable {
  httpUrl: string;
  httpsUrl: string;
}

/** `fetch` served on loopback over HTTP and over HTTPS (a self-signed certificate written to `dir`). */
export function serveHttpAndHttps(dir: string, fetch: (req: Request) => Response | Promise<Response>): HttpAndHttps {
  const gen = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
  if (gen.exitCode !== 0) throw new Error(`openssl: ${gen.stderr.toString()}`);
  const http = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch });
  const https = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch, tls: { cert: Bun.file(join(dir, "cert.pem")), key: Bun.file(join(dir, "key.pem")) } });
  return {
    httpUrl: `http://127.0.0.1:${http.port}`,
    httpsUrl: `https://127.0.0.1:${https.port}`,
    [Symbol.dispose]: () => {
      http.stop(true);
      https.stop(true);
    },
  };
}

/** curl's exit code and the digest of the body it received (`flags`: e.g. --limit-rate). */
export function curlDigest(url: string, ...flags: string[]): Promise<{ exit: number; digest: string }> {
  const proc = Bun.spawn(["curl", "-sS", "--fail", "-k", ...flags, url], { stdout: "pipe", stderr: "pipe" });
  return new Response(proc.stdout).bytes().then(async (body) => ({ exit: await proc.exited, digest: digestOf(body) }));
}
