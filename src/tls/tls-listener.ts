// The HTTPS listener, with its certificate swapped in place. Bun's server.reload() keeps
// the old certificate (checked on Bun 1.4.5), so a new certificate gets a new listener on
// the same port (SO_REUSEPORT) and the old one stops accepting: connections it already
// has, downloads included, finish on it.
import type { Server } from "bun";
import type { IssuedCertificate } from "./acme-order.ts";

export interface TlsListenerOptions {
  hostname: string;
  port: number;
  idleTimeout: number;
  maxRequestBodySize: number;
  fetch: (request: Request, server: Server<undefined>) => Response | Promise<Response>;
}

export class TlsListener {
  private server?: Server<undefined>;
  private readonly draining = new Set<Promise<void>>();

  constructor(private readonly options: TlsListenerOptions) {}

  get listening(): boolean {
    return this.server !== undefined;
  }

  get url(): string | undefined {
    return this.server && `https://${this.server.hostname}:${this.server.port}`;
  }

  /** Starts serving `pem`, or hands the port over from the previous certificate's listener. */
  serve(pem: IssuedCertificate): void {
    const next = Bun.serve({ ...this.options, reusePort: true, tls: { cert: pem.cert, key: pem.key } });
    const previous = this.server;
    this.server = next;
    if (previous) this.drain(previous);
  }

  async stop(): Promise<void> {
    if (this.server) this.drain(this.server);
    this.server = undefined;
    await Promise.all(this.draining);
  }

  private drain(server: Server<undefined>): void {
    const done = server.stop(false).then(() => void this.draining.delete(done));
    this.draining.add(done);
  }
}
