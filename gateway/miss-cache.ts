/**
 * Ids recently found not to exist, remembered for `ttlMs`. Every look-up of
 * a missing auction costs an engine and a read-model request, and a client
 * can name any number of ids, so repeated misses are answered from here.
 * Bounded: at `entriesMax` the oldest entries go first (a Map keeps insertion
 * order). Short-lived on purpose: an id may come to exist (the engine assigns
 * ids in order), so a creation seen on the stream also forgets its id.
 */
export class MissCache<K> {
  private readonly missedAt = new Map<K, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly entriesMax = 100_000,
    private readonly clock: () => number = Date.now,
  ) {}

  has(key: K): boolean {
    const at = this.missedAt.get(key);
    if (at === undefined) return false;
    if (this.clock() - at < this.ttlMs) return true;
    this.missedAt.delete(key);
    return false;
  }

  add(key: K): void {
    this.missedAt.delete(key);
    if (this.missedAt.size >= this.entriesMax) this.missedAt.delete(this.missedAt.keys().next().value as K);
    this.missedAt.set(key, this.clock());
  }

  forget(key: K): void {
    this.missedAt.delete(key);
  }

  get size(): number {
    return this.missedAt.size;
  }
}
