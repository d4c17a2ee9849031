// Single-flight: concurrent identical work shares one promise. One instance per kind of
// result, so a caller can never receive another kind's value under the same key (a
// revalidation joining a miss once did: issue 15.12). Shared by every layer; imports nothing.

export class SingleFlight<V, K = string> {
  private readonly inflight = new Map<K, Promise<V>>();

  /** The running work for `key`, or `work()` started now and shared until it settles. */
  run(key: K, work: () => Promise<V>): Promise<V> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const promise = (async () => work())().finally(() => {
      if (this.inflight.get(key) === promise) this.inflight.delete(key);
    });
    this.inflight.set(key, promise);
    return promise;
  }

  /** Work in flight now (for leak checks and status). */
  get size(): number {
    return this.inflight.size;
  }
}
