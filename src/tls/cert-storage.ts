// Where the ACME account key and the certificate live: a directory on local disk, and
// Redis when replicas share one certificate. The disk copy is kept even then, so a
// replica restarted while Redis is down still serves its still-valid certificate.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SharedRedis } from "../redis/redis-client.ts";

export interface CertStorage {
  read(name: string): Promise<string | undefined>;
  /** ttlMs: the item may vanish after this long (challenge tokens). */
  write(name: string, value: string, ttlMs?: number): Promise<void>;
  remove(name: string): Promise<void>;
}

/** Files under one directory, written atomically (temp file + rename), readable by the owner only. */
export class FsCertStorage implements CertStorage {
  constructor(private readonly dir: string) {}

  async read(name: string): Promise<string | undefined> {
    return readFile(this.path(name), "utf8").catch(() => undefined);
  }

  async write(name: string, value: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temp = `${this.path(name)}.${process.pid}.tmp`;
    await writeFile(temp, value, { mode: 0o600 });
    await rename(temp, this.path(name));
  }

  async remove(name: string): Promise<void> {
    await Bun.file(this.path(name)).delete().catch(() => {});
  }

  private path(name: string): string {
    return join(this.dir, name.replaceAll("/", "_"));
  }
}

/** Keys under <prefix>acme:. While Redis is down, reads find nothing and writes are dropped. */
export class RedisCertStorage implements CertStorage {
  constructor(private readonly redis: SharedRedis) {}

  async read(name: string): Promise<string | undefined> {
    return (await this.redis.try((c) => c.get(this.redis.key("acme", name)))) ?? undefined;
  }

  async write(name: string, value: string, ttlMs?: number): Promise<void> {
    const key = this.redis.key("acme", name);
    await this.redis.try((c) => (ttlMs ? c.set(key, value, "PX", ttlMs) : c.set(key, value)));
  }

  async remove(name: string): Promise<void> {
    await this.redis.try((c) => c.del(this.redis.key("acme", name)));
  }
}

/** The shared store first, the local copy as fallback; writes go to both. */
export class LayeredCertStorage implements CertStorage {
  constructor(
    private readonly shared: CertStorage,
    private readonly local: CertStorage,
  ) {}

  async read(name: string): Promise<string | undefined> {
    const shared = await this.shared.read(name);
    if (shared === undefined) return this.local.read(name);
    // Keep a local copy of what another replica stored.
    if ((await this.local.read(name)) !== shared) await this.local.write(name, shared);
    return shared;
  }

  async write(name: string, value: string, ttlMs?: number): Promise<void> {
    await Promise.all([this.shared.write(name, value, ttlMs), this.local.write(name, value)]);
  }

  async remove(name: string): Promise<void> {
    await Promise.all([this.shared.remove(name), this.local.remove(name)]);
  }
}
