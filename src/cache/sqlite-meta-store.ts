// The embedded MetaStore: one SQLite file (bun:sqlite) beside the blobs, so a single
// ferry needs no Redis and its cache survives restarts. WAL mode keeps readers
// from waiting on writers.
import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { imageSize } from "../protocol/image-size.ts";
import type { ManifestRecord, MetaStore, RepositoryRef, RepositoryTags, TagRecord } from "./meta-store.ts";

const TOUCH_FLUSH_MS = 5_000;

export class SqliteMetaStore implements MetaStore {
  private readonly db: Database;
  private readonly q: {
    getTag: Statement<{ digest: string; media_type: string; size: number; checked_at: number; pulled_at: number | null }, [string, string, string]>;
    touchTag: Statement<unknown, [number, string, string, string]>;
    putTag: Statement<unknown, [string, string, string, string, string, number, number]>;
    getManifest: Statement<{ media_type: string; body: Uint8Array }, [string, string, string]>;
    putManifest: Statement<unknown, [string, string, string, string, Uint8Array, number]>;
    putImageSize: Statement<unknown, [string, string, string, number | null]>;
    dataVersion: Statement<{ data_version: number }, []>;
    listTags: Statement<{ tag: string }, [string, string]>;
    listRepositories: Statement<{ registry: string; repository: string }, []>;
    listAllTags: Statement<{ registry: string; repository: string; tag: string; digest: string; media_type: string; size: number; checked_at: number; pulled_at: number | null; sized: number; image_size: number | null }, []>;
  };

  constructor(
    dir: string,
    private readonly now: () => number = Date.now,
  ) {
    mkdirSync(dir, { recursive: true });
    this.db = new Database(join(dir, "meta.sqlite"), { create: true, strict: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS tags (
        registry TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL,
        digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL, checked_at INTEGER NOT NULL,
        PRIMARY KEY (registry, repository, tag));
      CREATE TABLE IF NOT EXISTS manifests (
        registry TEXT NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL,
        media_type TEXT NOT NULL, body BLOB NOT NULL, created_at INTEGER NOT NULL,
        PRIMARY KEY (registry, repository, digest));
      -- Added later: each manifest's imageSize(), written with it, so the dashboard's listing
      -- parses no bodies. A table of its own: older versions insert manifests without naming
      -- columns. A manifest one of them wrote gets its row from the next listing.
      CREATE TABLE IF NOT EXISTS image_sizes (
        registry TEXT NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER,
        PRIMARY KEY (registry, repository, digest));
    `);
    // Added after the first release of the schema: a column for the dashboard's "last pull".
    const columns = this.db.query<{ name: string }, []>("PRAGMA table_info(tags)").all();
    if (!columns.some((c) => c.name === "pulled_at")) this.db.exec("ALTER TABLE tags ADD COLUMN pulled_at INTEGER");
    this.q = {
      getTag: this.db.query("SELECT digest, media_type, size, checked_at, pulled_at FROM tags WHERE registry = ? AND repository = ? AND tag = ?"),
      putTag: this.db.query(
        "INSERT INTO tags (registry, repository, tag, digest, media_type, size, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?) " +
          "ON CONFLICT (registry, repository, tag) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type, size = excluded.size, checked_at = excluded.checked_at",
      ),
      touchTag: this.db.query("UPDATE tags SET pulled_at = ? WHERE registry = ? AND repository = ? AND tag = ?"),
      getManifest: this.db.query("SELECT media_type, body FROM manifests WHERE registry = ? AND repository = ? AND digest = ?"),
      putManifest: this.db.query("INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?, ?)"),
      putImageSize: this.db.query("INSERT OR IGNORE INTO image_sizes VALUES (?, ?, ?, ?)"),
      dataVersion: this.db.query("PRAGMA data_version"),
      listTags: this.db.query("SELECT tag FROM tags WHERE registry = ? AND repository = ? ORDER BY tag"),
      listRepositories: this.db.query(
        "SELECT registry, repository FROM manifests UNION SELECT registry, repository FROM tags ORDER BY registry, repository",
      ),
      listAllTags: this.db.query(
        "SELECT t.registry, t.repository, t.tag, t.digest, t.media_type, t.size, t.checked_at, t.pulled_at, s.digest IS NOT NULL AS sized, s.size AS image_size " +
          "FROM tags t LEFT JOIN image_sizes s ON s.registry = t.registry AND s.repository = t.repository AND s.digest = t.digest ORDER BY t.registry, t.repository, t.tag",
      ),
    };
  }

  async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const row = this.q.getTag.get(repo.registry, repo.repository, tag);
    const pending = this.pendingTouches.get(JSON.stringify([repo.registry, repo.repository, tag]));
    return row ? { digest: row.digest, mediaType: row.media_type, size: row.size, checkedAt: row.checked_at, pulledAt: pending ?? row.pulled_at ?? undefined } : undefined;
  }

  async putTag(repo: RepositoryRef, tag: string, r: TagRecord): Promise<void> {
    this.writes++;
    this.q.putTag.run(repo.registry, repo.repository, tag, r.digest, r.mediaType, r.size, r.checkedAt);
  }

  /**
   * Last-pull times are written behind, in one transaction every few seconds: a write
   * per tag request would put SQLite commits (and WAL checkpoints) on the hot path.
   */
  touchTag(repo: RepositoryRef, tag: string, at: number): void {
    this.writes++;
    this.pendingTouches.set(JSON.stringify([repo.registry, repo.repository, tag]), at);
    this.touchTimer ??= setTimeout(() => this.flushTouches(), TOUCH_FLUSH_MS);
  }

  private readonly pendingTouches = new Map<string, number>();
  private touchTimer: Timer | undefined;

  private flushTouches(): void {
    clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    if (this.pendingTouches.size === 0) return;
    const touches = [...this.pendingTouches];
    this.pendingTouches.clear();
    this.db.transaction(() => {
      for (const [key, at] of touches) {
        const [registry, repository, tag] = JSON.parse(key) as [string, string, string];
        this.q.touchTag.run(at, registry, repository, tag);
      }
    })();
  }

  async getManifest(repo: RepositoryRef, digest: string): Promise<ManifestRecord | undefined> {
    const row = this.q.getManifest.get(repo.registry, repo.repository, digest);
    return row ? { digest, mediaType: row.media_type, body: new Uint8Array(row.body) } : undefined;
  }

  async putManifest(repo: RepositoryRef, r: ManifestRecord): Promise<void> {
    this.writes++;
    this.db.transaction(() => {
      this.q.putManifest.run(repo.registry, repo.repository, r.digest, r.mediaType, r.body, this.now());
      this.q.putImageSize.run(repo.registry, repo.repository, r.digest, imageSize(r.body));
    })();
  }

  async *manifests(): AsyncIterable<RepositoryRef & ManifestRecord> {
    const rows = this.db.query<{ registry: string; repository: string; digest: string; media_type: string; body: Uint8Array }, []>("SELECT registry, repository, digest, media_type, body FROM manifests");
    for (const r of rows.iterate()) yield { registry: r.registry, repository: r.repository, digest: r.digest, mediaType: r.media_type, body: new Uint8Array(r.body) };
  }

  async listTags(repo: RepositoryRef): Promise<string[]> {
    return this.q.listTags.all(repo.registry, repo.repository).map((r) => r.tag);
  }

  async listRepositories(): Promise<RepositoryRef[]> {
    return this.q.listRepositories.all();
  }

  async listRepositoryTags(): Promise<RepositoryTags[]> {
    // One transaction: both reads see the same snapshot (another process may write between them).
    const [repos, rows] = this.db.transaction(() => [this.q.listRepositories.all(), this.q.listAllTags.all()] as const)();
    const touched = this.pendingTouches.size > 0;
    const unsized: { repo: RepositoryRef; tag: RepositoryTags["tags"][number] }[] = [];
    let next = 0;
    // Both queries order by (registry, repository) in SQLite's collation, so each
    // repository's tags are the run of rows that follows: no comparison made in JS.
    const listing = repos.map((repo) => {
      const tags: RepositoryTags["tags"] = [];
      for (let row = rows[next]; row && row.registry === repo.registry && row.repository === repo.repository; row = rows[++next]) {
        const pending = touched ? this.pendingTouches.get(JSON.stringify([repo.registry, repo.repository, row.tag])) : undefined;
        const tag = { tag: row.tag, digest: row.digest, mediaType: row.media_type, size: row.size, checkedAt: row.checked_at, pulledAt: pending ?? row.pulled_at ?? undefined, imageSize: row.sized ? row.image_size : undefined };
        if (!row.sized) unsized.push({ repo, tag });
        tags.push(tag);
      }
      return { registry: repo.registry, repository: repo.repository, tags };
    });
    this.fillImageSizes(unsized);
    return listing;
  }

  /** Writes through this connection; another connection's show in SQLite's data_version. */
  private writes = 0;

  listingVersion(): string {
    return `${this.writes}.${this.q.dataVersion.get()!.data_version}`;
  }

  /** Sizes of manifests an older version cached (written now), or undefined for tags whose manifest is not cached. */
  private fillImageSizes(unsized: { repo: RepositoryRef; tag: RepositoryTags["tags"][number] }[]): void {
    if (unsized.length === 0) return;
    this.db.transaction(() => {
      for (const { repo, tag } of unsized) {
        const m = this.q.getManifest.get(repo.registry, repo.repository, tag.digest);
        if (!m) continue;
        tag.imageSize = imageSize(m.body);
        this.q.putImageSize.run(repo.registry, repo.repository, tag.digest, tag.imageSize);
      }
    })();
  }

  /**
   * Retention (`ferry prune --older-than`): removes tags neither confirmed nor pulled since
   * `cutoff`, and manifests cached before it that no kept tag reaches (directly or through
   * an index). Without it the database only grows.
   */
  async pruneOlderThan(cutoff: number, dryRun: boolean): Promise<{ tags: number; manifests: number }> {
    this.flushTouches();
    type Row = { registry: string; repository: string; digest: string };
    const lastUse = "MAX(checked_at, COALESCE(pulled_at, 0))";
    const oldTags = this.db.query<Row & { tag: string }, [number]>(`SELECT registry, repository, tag, digest FROM tags WHERE ${lastUse} < ?`).all(cutoff);
    const keep = new Set<string>();
    const keyOf = (r: Row) => JSON.stringify([r.registry, r.repository, r.digest]);
    let frontier = this.db.query<Row, [number]>(`SELECT registry, repository, digest FROM tags WHERE ${lastUse} >= ?`).all(cutoff);
    // Bounded: each manifest enters `keep` once.
    while (frontier.length) {
      const next: Row[] = [];
      for (const r of frontier) {
        if (keep.has(keyOf(r))) continue;
        keep.add(keyOf(r));
        const m = this.q.getManifest.get(r.registry, r.repository, r.digest);
        for (const child of m ? childDigests(m.body) : []) next.push({ registry: r.registry, repository: r.repository, digest: child });
      }
      frontier = next;
    }
    const oldManifests = this.db.query<Row, [number]>("SELECT registry, repository, digest FROM manifests WHERE created_at < ?").all(cutoff).filter((r) => !keep.has(keyOf(r)));
    if (!dryRun) {
      this.writes++;
      const dropTag = this.db.query<unknown, [string, string, string]>("DELETE FROM tags WHERE registry = ? AND repository = ? AND tag = ?");
      const dropManifest = this.db.query<unknown, [string, string, string]>("DELETE FROM manifests WHERE registry = ? AND repository = ? AND digest = ?");
      const dropSize = this.db.query<unknown, [string, string, string]>("DELETE FROM image_sizes WHERE registry = ? AND repository = ? AND digest = ?");
      this.db.transaction(() => {
        for (const t of oldTags) dropTag.run(t.registry, t.repository, t.tag);
        for (const m of oldManifests) {
          dropManifest.run(m.registry, m.repository, m.digest);
          dropSize.run(m.registry, m.repository, m.digest);
        }
      })();
    }
    return { tags: oldTags.length, manifests: oldManifests.length };
  }

  close(): void {
    this.flushTouches();
    this.db.close();
  }
}

/** Digests an index (or manifest list) lists; none for an image manifest. */
function childDigests(body: Uint8Array): string[] {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as { manifests?: { digest?: unknown }[] };
    return Array.isArray(parsed.manifests) ? parsed.manifests.map((m) => m?.digest).filter((d): d is string => typeof d === "string") : [];
  } catch {
    return [];
  }
}
