// Traffic over time for the dashboard: per-minute totals of cache hits/misses and of
// bytes served from the cache vs fetched from upstream, for the last 24 hours.

export interface TrafficPoint {
  minute: number; // ms epoch of the minute's start
  requests: number;
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

const KEEP_MINUTES = 24 * 60;

export class TrafficStats {
  private readonly points: TrafficPoint[] = [];
  readonly totals = { requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 };

  constructor(private readonly now: () => number = Date.now) {}

  private current(): TrafficPoint {
    const minute = Math.floor(this.now() / 60_000) * 60_000;
    let last = this.points.at(-1);
    if (!last || last.minute !== minute) {
      last = { minute, requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 };
      this.points.push(last);
      if (this.points.length > KEEP_MINUTES) this.points.splice(0, this.points.length - KEEP_MINUTES);
    }
    return last;
  }

  /** One served object: a hit (from any cache tier) or a miss, and the bytes it carries. */
  served(hit: boolean, bytes: number): void {
    const p = this.current();
    p.requests++;
    this.totals.requests++;
    if (hit) {
      p.hits++;
      p.bytesFromCache += bytes;
      this.totals.hits++;
      this.totals.bytesFromCache += bytes;
    } else {
      p.misses++;
      p.bytesFromUpstream += bytes;
      this.totals.misses++;
      this.totals.bytesFromUpstream += bytes;
    }
  }

  series(sinceMs = 60 * 60_000): TrafficPoint[] {
    const from = this.now() - sinceMs;
    return this.points.filter((p) => p.minute >= from);
  }
}
