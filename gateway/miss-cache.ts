import { performance } from 'node:perf_hooks';
import { GenerationalMap } from './generational-map.js';

/**
 * Ids recently found not to exist, remembered for `ttlMs`. Every look-up of
 * a missing auction costs an engine and a read-model request, and a client
 * can name any number of ids, so repeated misses are answered from here.
 * Bounded: past `entriesMax` the oldest half goes (gateway/generational-map.ts). Short-lived on purpose: an id may come to exist (the engine assigns
 * ids in order), so a creation seen on the stream or made here forgets its
 * id, and a look-up that started before that creation cannot record a miss
 * after it. The clock is monotonic: a wall-clock step must not stretch a miss.
 */
export class MissCache<K> {
  private readonly missedAt: GenerationalMap<K, number>;
  /**
   * When each id was last found to exist (forgotten), for look-ups that
   * started earlier. Twice the bound: every creation lands here, and at least
   * `entriesMax` of them stay (a look-up lives no longer than the TTL).
   */
  private readonly existsSince: GenerationalMap<K, number>;

  constructor(
    private readonly ttlMs: number,
    entriesMax = 100_000,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.missedAt = new GenerationalMap(entriesMax);
    this.existsSince = new GenerationalMap(2 * entriesMax);
  }

  /** The clock's reading now: what a look-up passes to `add` as the time it started. */
  now(): number {
    return this.clock();
  }

  has(key: K): boolean {
    const at = this.missedAt.get(key);
    if (at === undefined) return false;
    if (this.clock() - at < this.ttlMs) return true;
    this.missedAt.delete(key);
    return false;
  }

  /** A look-up that started at `startedAt` found nothing; ignored if the id was found to exist since. */
  add(key: K, startedAt = this.clock()): void {
    const since = this.existsSince.get(key);
    if (since !== undefined && since >= startedAt) return;
    this.missedAt.set(key, this.clock());
  }

  /** The id exists now. */
  forget(key: K): void {
    this.missedAt.delete(key);
    // Only a look-up in flight can be older than this, and none lives longer than the TTL.
    this.existsSince.set(key, this.clock());
  }

  get size(): number {
    return this.missedAt.size;
  }
}
