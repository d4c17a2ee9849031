// Bandwidth caps: a token bucket shared by every transfer that goes through it (an
// endpoint's blob downloads, or one client's blob deliveries). Bodies are cut into
// slices of at most SLICE bytes and each slice waits its turn in a FIFO, so concurrent
// transfers take turns and share the rate evenly. Only blob bodies are shaped: manifests
// and everything else never wait here. Lives in shared/ so that both
// upstream tiers and access (client delivery) can use it.

/** Fairness grain: a transfer's turn is at most this many bytes. */
const SLICE = 64 * 1024;

export class Bandwidth {
  private tokens: number;
  private last = performance.now();
  private readonly capacity: number;
  private readonly queue: { bytes: number; resolve: () => void }[] = [];
  private timer: Timer | undefined;

  constructor(readonly bytesPerSecond: number) {
    // 50 ms worth of burst: enough to absorb late timers, too little to show in a rate.
    this.capacity = Math.max(SLICE, bytesPerSecond / 20);
    this.tokens = this.capacity;
  }

  /**
   * Waits until `bytes` may go. The bucket may go into debt by one slice, so the rate
   * holds exactly even when timers fire late; the next transfer then waits the debt off.
   */
  take(bytes: number): Promise<void> {
    if (this.queue.length === 0) {
      this.refill();
      if (this.tokens > 0) {
        this.tokens -= bytes;
        return Promise.resolve();
      }
    }
    return new Promise((resolve) => {
      this.queue.push({ bytes, resolve });
      this.schedule();
    });
  }

  /** The body, paced by this bucket; `onEnd` runs once when it ends, fails or is cancelled. */
  shape(body: ReadableStream<Uint8Array>, onEnd?: () => void): ReadableStream<Uint8Array> {
    const reader = body.getReader();
    let rest: Uint8Array | undefined;
    let ended = false;
    const end = () => {
      if (!ended) {
        ended = true;
        onEnd?.();
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            if (!rest || rest.byteLength === 0) {
              const { done, value } = await reader.read();
              if (done) {
                end();
                controller.close();
                return;
              }
              rest = value;
            }
            const slice = rest.byteLength > SLICE ? rest.subarray(0, SLICE) : rest;
            rest = rest.subarray(slice.byteLength);
            await this.take(slice.byteLength);
            controller.enqueue(slice);
          } catch (error) {
            end();
            controller.error(error);
          }
        },
        cancel: (reason) => {
          end();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }

  private schedule(): void {
    if (this.timer) return;
    const waitMs = Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.bytesPerSecond));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refill();
      while (this.queue.length > 0 && this.tokens > 0) {
        const next = this.queue.shift()!;
        this.tokens -= next.bytes;
        next.resolve();
      }
      if (this.queue.length > 0) this.schedule();
    }, waitMs);
  }
}

/** One bucket per key (a client address), alive while a transfer of that key is. */
export class BandwidthPool {
  private readonly buckets = new Map<string, { bucket: Bandwidth; transfers: number }>();

  constructor(readonly bytesPerSecond: number) {}

  shape(key: string, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    let entry = this.buckets.get(key);
    if (!entry) {
      entry = { bucket: new Bandwidth(this.bytesPerSecond), transfers: 0 };
      this.buckets.set(key, entry);
    }
    entry.transfers++;
    const held = entry;
    return held.bucket.shape(body, () => {
      if (--held.transfers === 0 && this.buckets.get(key) === held) this.buckets.delete(key);
    });
  }

  /** Keys with a transfer in flight (for tests and the status view). */
  get active(): number {
    return this.buckets.size;
  }
}
