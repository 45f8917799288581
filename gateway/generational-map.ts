/**
 * A map of at most `entriesMax` entries that forgets its oldest entries half
 * at a time: keys go into the newer of two generations, and when that holds
 * half the bound the older one is dropped and the newer takes its place.
 * Every operation is constant time.
 *
 * Not a Map whose first key is deleted at the bound: V8 leaves a deleted
 * entry in a Map's table until it rehashes, and finding the first live key
 * walks over every deleted one before it, so at the bound each insertion
 * walked up to the whole table. The gateway's miss cache, bounded that way,
 * forgot the id of every auction created: once 100k had been created, each
 * thousand more cost seconds, and at 10M (make bench-scale) the gateway's
 * event loop stood still for up to 38 s, shedding 90% of bids.
 */
export class GenerationalMap<K, V> {
  private newer = new Map<K, V>();
  private older = new Map<K, V>();
  private readonly generationMax: number;

  constructor(entriesMax: number) {
    if (!Number.isSafeInteger(entriesMax) || entriesMax < 2)
      throw new RangeError(`entriesMax is an integer of at least 2, got ${entriesMax}`);
    this.generationMax = Math.floor(entriesMax / 2);
  }

  get(key: K): V | undefined {
    const value = this.newer.get(key);
    return value !== undefined || this.newer.has(key) ? value : this.older.get(key);
  }

  set(key: K, value: V): void {
    this.older.delete(key);
    this.newer.set(key, value);
    if (this.newer.size >= this.generationMax) {
      this.older = this.newer;
      this.newer = new Map();
    }
  }

  delete(key: K): void {
    this.newer.delete(key);
    this.older.delete(key);
  }

  get size(): number {
    return this.newer.size + this.older.size;
  }
}
