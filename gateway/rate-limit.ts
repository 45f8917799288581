/**
 * Token buckets: `ratePerSec` tokens a second, up to `burst` saved. A take
 * that finds no token is refused; a peer far below zero (it kept sending
 * after being refused) is flooding and can be cut off.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  /**
   * True when allowed. Refusals still count (down to -burst * floodFactor)
   * unless `chargeRefusals` is false: a peer that keeps sending after being
   * refused then waits longer, which is what flood detection wants, but a
   * reader slightly over its rate would otherwise get nothing at all.
   */
  take(now: number, cost = 1, chargeRefusals = true): boolean {
    this.refill(now);
    if (this.tokens >= cost) {
      this.tokens -= cost;
      return true;
    }
    if (chargeRefusals) this.tokens = Math.max(this.tokens - cost, -this.burst * FLOOD_FACTOR);
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
    /** Whether refused takes are charged too (TokenBucket.take). */
    private readonly chargeRefusals = true,
  ) {
    this.overflow = new TokenBucket(ratePerSec * 100, burst * 100, clock());
  }

  /** `cost` is capped at the burst: a costlier action than a full bucket would otherwise never pass. */
  take(key: K, cost = 1): boolean {
    const now = this.clock();
    cost = Math.min(cost, this.burst);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.keysMax) return this.overflow.take(now, cost, this.chargeRefusals);
      bucket = new TokenBucket(this.ratePerSec, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(now, cost, this.chargeRefusals);
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
