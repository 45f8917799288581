/**
 * Token buckets: `ratePerSec` tokens a second, up to `burst` saved. A take
 * that finds no token is refused; a peer far below zero (it kept sending
 * after being refused) is flooding and can be cut off.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(private readonly ratePerSec: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  /** True when allowed. Refusals still count, down to -burst * floodFactor. */
  take(now: number, cost = 1): boolean {
    this.refill(now);
    if (this.tokens >= cost) {
      this.tokens -= cost;
      return true;
    }
    this.tokens = Math.max(this.tokens - cost, -this.burst * FLOOD_FACTOR);
    return false;
  }

  /** Refused this many times more than it was allowed to send in a burst: cut it off. */
  flooding(): boolean {
    return this.tokens <= -this.burst * FLOOD_FACTOR;
  }

  /** Full again: nothing to remember about this key. */
  idle(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    const elapsed = now - this.updatedAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
      this.updatedAt = now;
    }
  }
}

const FLOOD_FACTOR = 4;

/**
 * One bucket per key (user, client address), bounded: full buckets are
 * forgotten by a periodic sweep, and past `keysMax` keys new keys share one
 * overflow bucket rather than grow the map.
 */
export class KeyedLimiter<K> {
  private readonly buckets = new Map<K, TokenBucket>();
  private readonly overflow: TokenBucket;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly keysMax = 1_000_000,
    private readonly clock: () => number = Date.now,
  ) {
    this.overflow = new TokenBucket(ratePerSec * 100, burst * 100, clock());
  }

  take(key: K, cost = 1): boolean {
    const now = this.clock();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.keysMax) return this.overflow.take(now, cost);
      bucket = new TokenBucket(this.ratePerSec, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(now, cost);
  }

  /** Drops the buckets that are full (call every few seconds). */
  sweep(): void {
    const now = this.clock();
    for (const [key, bucket] of this.buckets) if (bucket.idle(now)) this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }
}
