import { invariant } from './errors.js';

/** What a retried (bidder, bidId) of an accepted bid is answered with. */
export type RememberedBid = {
  auctionId: number;
  price: number;
  endsAt: number;
  leading: boolean;
  seq: number;
};

/** Fields of one remembered bid, in snapshot order. */
export type IdempotencyEntries = {
  userId: Uint32Array;
  bidId: Float64Array;
  auctionId: Float64Array;
  seq: Float64Array;
  endsAt: Float64Array;
  price: Uint32Array;
  leading: Uint8Array;
};

/**
 * The last `capacity` accepted bids, keyed by (bidder, bidId), so a retry gets
 * the original answer. A ring of entries (oldest evicted first) indexed by an
 * open-addressing hash table with linear probing and backward-shift deletion:
 * fixed memory, no object per entry, and the same contents wherever the same
 * log is replayed.
 *
 * Eviction only costs the original answer, never a double count: a retried
 * maximum that is no longer remembered meets its own earlier effect (the
 * bidder leads with that maximum, or the price has passed it) and is rejected.
 */
export class IdempotencyTable {
  readonly capacity: number;
  private readonly entries: IdempotencyEntries;
  /** Ring index of the oldest entry. */
  private head = 0;
  private count = 0;
  /** Hash index: ring index plus one, 0 when empty. */
  private readonly index: Uint32Array;
  private readonly mask: number;

  constructor(capacity: number) {
    invariant(Number.isInteger(capacity) && capacity >= 1 && capacity <= 1 << 28, 'bad idempotency capacity');
    this.capacity = capacity;
    this.entries = {
      userId: new Uint32Array(capacity),
      bidId: new Float64Array(capacity),
      auctionId: new Float64Array(capacity),
      seq: new Float64Array(capacity),
      endsAt: new Float64Array(capacity),
      price: new Uint32Array(capacity),
      leading: new Uint8Array(capacity),
    };
    let size = 2;
    while (size < capacity * 2) size *= 2;
    this.index = new Uint32Array(size);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Ring index of the entry for (userId, bidId), or -1. */
  find(userId: number, bidId: number): number {
    const { index, mask, entries } = this;
    for (let i = hashKey(userId, bidId) & mask; ; i = (i + 1) & mask) {
      const at = index[i];
      if (at === 0) return -1;
      if (entries.userId[at - 1] === userId && entries.bidId[at - 1] === bidId) return at - 1;
    }
  }

  read(ringIndex: number): RememberedBid {
    const e = this.entries;
    return {
      auctionId: e.auctionId[ringIndex],
      price: e.price[ringIndex],
      endsAt: e.endsAt[ringIndex],
      leading: e.leading[ringIndex] === 1,
      seq: e.seq[ringIndex],
    };
  }

  /** Remembers a new accepted bid; the caller has checked it is not known yet. */
  remember(userId: number, bidId: number, bid: RememberedBid): void {
    if (this.count === this.capacity) this.evictOldest();
    const ringIndex = (this.head + this.count) % this.capacity;
    const e = this.entries;
    e.userId[ringIndex] = userId;
    e.bidId[ringIndex] = bidId;
    e.auctionId[ringIndex] = bid.auctionId;
    e.seq[ringIndex] = bid.seq;
    e.endsAt[ringIndex] = bid.endsAt;
    e.price[ringIndex] = bid.price;
    e.leading[ringIndex] = bid.leading ? 1 : 0;
    this.count++;
    const { index, mask } = this;
    let i = hashKey(userId, bidId) & mask;
    while (index[i] !== 0) i = (i + 1) & mask;
    index[i] = ringIndex + 1;
  }

  /** Copies of the entries, oldest first (snapshots and state hashes). */
  export(): IdempotencyEntries {
    const out: IdempotencyEntries = {
      userId: new Uint32Array(this.count),
      bidId: new Float64Array(this.count),
      auctionId: new Float64Array(this.count),
      seq: new Float64Array(this.count),
      endsAt: new Float64Array(this.count),
      price: new Uint32Array(this.count),
      leading: new Uint8Array(this.count),
    };
    for (const key of Object.keys(out) as (keyof IdempotencyEntries)[]) {
      const source = this.entries[key];
      const target = out[key];
      const firstPart = Math.min(this.count, this.capacity - this.head);
      target.set(source.subarray(this.head, this.head + firstPart), 0);
      target.set(source.subarray(0, this.count - firstPart), firstPart);
    }
    return out;
  }

  /** Re-remembers exported entries, oldest first (a smaller table keeps the newest). */
  import(entries: IdempotencyEntries): void {
    invariant(this.count === 0, 'import into a used idempotency table');
    const n = entries.userId.length;
    for (let i = Math.max(0, n - this.capacity); i < n; i++) {
      this.remember(entries.userId[i], entries.bidId[i], {
        auctionId: entries.auctionId[i],
        price: entries.price[i],
        endsAt: entries.endsAt[i],
        leading: entries.leading[i] === 1,
        seq: entries.seq[i],
      });
    }
  }

  /** Every entry is reachable through the index and the index holds nothing else. */
  verify(): void {
    let used = 0;
    for (let i = 0; i < this.index.length; i++) if (this.index[i] !== 0) used++;
    invariant(used === this.count, `idempotency index holds ${used} entries, ring ${this.count}`);
    for (let k = 0; k < this.count; k++) {
      const ringIndex = (this.head + k) % this.capacity;
      const found = this.find(this.entries.userId[ringIndex], this.entries.bidId[ringIndex]);
      invariant(found === ringIndex, `idempotency entry ${ringIndex} unreachable`);
    }
  }

  private evictOldest(): void {
    const ringIndex = this.head;
    const { index, mask, entries } = this;
    let i = hashKey(entries.userId[ringIndex], entries.bidId[ringIndex]) & mask;
    while (index[i] !== ringIndex + 1) {
      invariant(index[i] !== 0, 'idempotency index lost an entry');
      i = (i + 1) & mask;
    }
    this.deleteAt(i);
    this.head = (this.head + 1) % this.capacity;
    this.count--;
  }

  /** Backward-shift deletion keeps every probe chain unbroken without tombstones. */
  private deleteAt(hole: number): void {
    const { index, mask, entries } = this;
    index[hole] = 0;
    for (let j = (hole + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const at = index[j] - 1;
      const home = hashKey(entries.userId[at], entries.bidId[at]) & mask;
      // The entry at j may stay only if its home lies cyclically in (hole, j].
      const staysPut = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (staysPut) continue;
      index[hole] = index[j];
      index[j] = 0;
      hole = j;
    }
  }
}

/** A 32-bit mix of a user id (32 bits) and a bid id (53 bits). */
export function hashKey(userId: number, bidId: number): number {
  const low = bidId >>> 0;
  const high = (bidId / 4294967296) >>> 0;
  let h = Math.imul(userId ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ low, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ high, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}
