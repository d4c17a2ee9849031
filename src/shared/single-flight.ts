// Single-flight: concurrent identical work shares one promise. One instance per kind of
// result, so a caller can never receive another kind's value under the same key (a
// revalidation joining a miss once did: issue 15.12). Shared by every layer; imports nothing.

interface Flight<V> {
  promise: Promise<V>;
  /** Callers still waiting; one without a signal never leaves. */
  waiters: number;
  /** The work's own signal: aborted once every caller has stopped waiting. */
  abort: AbortController;
}

export class SingleFlight<V, K = string> {
  private readonly inflight = new Map<K, Flight<V>>();

  /**
   * The running work for `key`, or `work()` started now and shared until it settles.
   * A caller's `signal` ends its own wait only (rejecting with its reason), so the first
   * caller's deadline is not everyone's; the work's signal aborts when no caller is left,
   * and a later caller then starts the work anew. The work bounds itself (its timeout).
   */
  run(key: K, work: (signal: AbortSignal) => Promise<V>, signal?: AbortSignal): Promise<V> {
    let flight = this.inflight.get(key);
    if (!flight) {
      const abort = new AbortController();
      const started: Flight<V> = { promise: undefined as unknown as Promise<V>, waiters: 0, abort };
      started.promise = (async () => work(abort.signal))().finally(() => {
        if (this.inflight.get(key) === started) this.inflight.delete(key);
      });
      this.inflight.set(key, started);
      flight = started;
    }
    return this.wait(key, flight, signal);
  }

  private wait(key: K, flight: Flight<V>, signal: AbortSignal | undefined): Promise<V> {
    flight.waiters++;
    if (!signal) return flight.promise;
    return new Promise<V>((resolve, reject) => {
      const leave = () => {
        reject(signal.reason);
        if (--flight.waiters > 0) return;
        if (this.inflight.get(key) === flight) this.inflight.delete(key);
        flight.abort.abort();
      };
      if (signal.aborted) return leave();
      signal.addEventListener("abort", leave, { once: true });
      const settled = () => signal.removeEventListener("abort", leave);
      flight.promise.then(
        (value) => (settled(), resolve(value)),
        (error: unknown) => (settled(), reject(error)),
      );
    });
  }

  /** Work in flight now (for leak checks and status). */
  get size(): number {
    return this.inflight.size;
  }
}
