import { invariant } from './errors.js';

/** What a retried (bidder, bidId) of an accepted bid is answered with. */
export type RememberedBid = {
  /** The low 32 bits of the auction id: enough to tell a retry from a reused bid id. */
  auctionKey: number;
  price: number;
  endsAt: number;
  leading: boolean;
  seq: number;
};

/** Remembered bids of one generation, in insertion order (snapshots, hashes). */
export type IdempotencyEntries = {
  userId: Uint32Array;
  bidId: Float64Array;
  auctionKey: Uint32Array;
  seq: Float64Array;
  endsAt: Float64Array;
  price: Uint32Array;
  leading: Uint8Array;
};

/** Both generations, older first. */
export type IdempotencyImage = { older: IdempotencyEntries; newer: IdempotencyEntries };

const FIELDS = ['userId', 'bidId', 'auctionKey', 'seq', 'endsAt', 'price', 'leading'] as const;

/**
 * Recently accepted bids keyed by (bidder, bidId), so that a retry gets the
 * original answer. Two generations of `generationSize` entries: inserts go to
 * the newer one; when it is full the older generation is dropped wholesale
 * (one sequential clear of its index) and becomes the new one. So the last
 * `generationSize` accepted bids are always remembered, and at most twice
 * that many, in fixed memory with no object per entry.
 *
 * Each generation has an open-addressing index (linear probing, load <= 1/2)
 * of 32-bit cells packing the entry index + 1 (low bits) under a tag taken
 * from the hash's high bits: a lookup reads the entries only when the tag
 * matches, so a miss costs one cache line per generation, and there is no
 * per-entry deletion at all. The same log gives
 * the same contents anywhere; snapshots keep both generations exactly.
 *
 * Forgetting a bid only costs its original answer, never a double count: a
 * retried maximum meets its own earlier effect (the bidder already leads with
 * it, or the price has passed it) and is rejected.
 */
export class IdempotencyTable {
  readonly generationSize: number;
  private readonly entries: IdempotencyEntries;
  private readonly indexes: [Uint32Array, Uint32Array];
  private readonly counts = [0, 0];
  private readonly mask: number;
  /** Cells keep the entry index + 1 in the low `entryBits` bits and a hash tag above. */
  private readonly entryBits: number;
  private readonly entryMask: number;
  /** Which generation takes inserts (0 or 1); its entries live at [newer * size, ...). */
  private newer = 0;
  /** The export being taken in steps, if any: a rotation must let it copy what it is about to overwrite. */
  private exporting: IdempotencyExport | null = null;

  /** `capacity` entries in all: two generations of half as many. */
  constructor(capacity: number) {
    invariant(
      Number.isInteger(capacity) && capacity >= 2 && capacity <= 1 << 28,
      `bad idempotency capacity ${capacity}`,
    );
    this.generationSize = capacity >>> 1;
    this.entries = allocateEntries(capacity);
    let cells = 2;
    while (cells < this.generationSize * 2) cells *= 2;
    this.mask = cells - 1;
    this.entryBits = 32 - Math.clz32(this.generationSize);
    this.entryMask = 2 ** this.entryBits - 1;
    this.indexes = [new Uint32Array(cells), new Uint32Array(cells)];
  }

  get size(): number {
    return this.counts[0] + this.counts[1];
  }

  /** Entry handle of (userId, bidId) for `read`, or -1. */
  find(userId: number, bidId: number, hash = hashKey(userId, bidId)): number {
    const found = this.findIn(this.newer, hash, userId, bidId);
    return found >= 0 ? found : this.findIn(this.newer ^ 1, hash, userId, bidId);
  }

  /** Touches the index cells a coming `find`/`remember` will read (see AuctionCore.warm). */
  warm(userId: number, bidId: number): number {
    const cell = hashKey(userId, bidId) & this.mask;
    return this.indexes[0][cell] + this.indexes[1][cell];
  }

  read(handle: number): RememberedBid {
    const e = this.entries;
    return {
      auctionKey: e.auctionKey[handle],
      price: e.price[handle],
      endsAt: e.endsAt[handle],
      leading: e.leading[handle] === 1,
      seq: e.seq[handle],
    };
  }

  /** Remembers a new accepted bid; the caller has checked it is not known yet. */
  remember(userId: number, bidId: number, bid: RememberedBid, hash = hashKey(userId, bidId)): void {
    if (this.counts[this.newer] === this.generationSize) this.rotate();
    const generation = this.newer;
    const local = this.counts[generation]++;
    const handle = generation * this.generationSize + local;
    const e = this.entries;
    e.userId[handle] = userId;
    e.bidId[handle] = bidId;
    e.auctionKey[handle] = bid.auctionKey;
    e.seq[handle] = bid.seq;
    e.endsAt[handle] = bid.endsAt;
    e.price[handle] = bid.price;
    e.leading[handle] = bid.leading ? 1 : 0;
    const index = this.indexes[generation];
    let cell = hash & this.mask;
    while (index[cell] !== 0) cell = (cell + 1) & this.mask;
    index[cell] = (this.tagOf(hash) | (local + 1)) >>> 0;
  }

  /** Copies of both generations' entries in insertion order. */
  export(): IdempotencyImage {
    return this.exportAtOnce().image();
  }

  /** An export copied completely now (it need not follow later inserts); beside one in steps if need be. */
  exportAtOnce(): IdempotencyExport {
    const taking = new IdempotencyExport(this.entries, this.generationSize, this.newer, this.counts, () => {});
    taking.step(Infinity);
    return taking;
  }

  /**
   * An export of the table as it is now, copied in steps while inserts go on
   * (AuctionCore.beginImage). Entries of a generation are written only at its
   * end until the generation is reused, so only a rotation can overwrite what
   * the export still has to copy: the export copies that generation first.
   * One at a time.
   */
  beginExport(): IdempotencyExport {
    invariant(this.exporting === null, 'an idempotency export is already being taken');
    const taking = new IdempotencyExport(this.entries, this.generationSize, this.newer, this.counts, () => {
      if (this.exporting === taking) this.exporting = null;
    });
    this.exporting = taking;
    return taking;
  }

  /** Loads an export into an empty table of the same capacity: identical behaviour afterwards. */
  import(image: IdempotencyImage): void {
    invariant(this.size === 0, 'import into a used idempotency table');
    invariant(
      image.older.userId.length <= this.generationSize && image.newer.userId.length <= this.generationSize,
      "remembered bids exceed this table; restore with the shard's own idempotency capacity",
    );
    for (const part of [image.older, image.newer]) {
      if (part === image.newer && image.older.userId.length > 0) this.rotateTo(this.newer ^ 1);
      for (let i = 0; i < part.userId.length; i++) {
        this.remember(part.userId[i], part.bidId[i], {
          auctionKey: part.auctionKey[i],
          price: part.price[i],
          endsAt: part.endsAt[i],
          leading: part.leading[i] === 1,
          seq: part.seq[i],
        });
      }
    }
  }

  /** Every entry is reachable through its generation's index, which holds nothing else. */
  verify(): void {
    for (const generation of [0, 1]) {
      const index = this.indexes[generation];
      let used = 0;
      for (let i = 0; i < index.length; i++) if (index[i] !== 0) used++;
      invariant(
        used === this.counts[generation],
        `idempotency generation ${generation}: index ${used}, entries ${this.counts[generation]}`,
      );
      for (let local = 0; local < this.counts[generation]; local++) {
        const handle = generation * this.generationSize + local;
        const userId = this.entries.userId[handle];
        const bidId = this.entries.bidId[handle];
        invariant(
          this.findIn(generation, hashKey(userId, bidId), userId, bidId) === handle,
          `idempotency entry ${handle} unreachable`,
        );
      }
    }
  }

  private findIn(generation: number, hash: number, userId: number, bidId: number): number {
    const index = this.indexes[generation];
    const base = generation * this.generationSize;
    const { mask, entries, entryMask } = this;
    const tag = this.tagOf(hash);
    for (let cell = hash & mask; ; cell = (cell + 1) & mask) {
      const value = index[cell];
      if (value === 0) return -1;
      if ((value & ~entryMask) >>> 0 !== tag) continue;
      const handle = base + (value & entryMask) - 1;
      if (entries.userId[handle] === userId && entries.bidId[handle] === bidId) return handle;
    }
  }

  /** The hash's high bits, in the cell bits above the entry index. */
  private tagOf(hash: number): number {
    return this.entryBits >= 32 ? 0 : ((hash >>> this.entryBits) << this.entryBits) >>> 0;
  }

  /** Drops the older generation and makes it the newer one. */
  private rotate(): void {
    this.rotateTo(this.newer ^ 1);
  }

  private rotateTo(generation: number): void {
    this.exporting?.beforeReuse(generation);
    this.newer = generation;
    this.indexes[generation].fill(0);
    this.counts[generation] = 0;
  }
}

/** Bytes an entry takes in an export (userId 4, bidId 8, auctionKey 4, seq 8, endsAt 8, price 4, leading 1). */
export const ENTRY_BYTES = 37;

/**
 * The entries of both generations as they were when the export began,
 * copied a bounded number at a time (`step`), older generation first.
 */
export class IdempotencyExport {
  /** Per part (older, newer): its generation, its entry count when the export began, and entries copied so far. */
  private readonly parts: { generation: number; count: number; copied: number; into: IdempotencyEntries }[];
  private ended = false;

  constructor(
    private readonly entries: IdempotencyEntries,
    private readonly generationSize: number,
    newer: number,
    counts: readonly number[],
    private readonly onEnd: () => void,
  ) {
    this.parts = [newer ^ 1, newer].map((generation) => ({
      generation,
      count: counts[generation],
      copied: 0,
      into: allocateEntries(counts[generation]),
    }));
  }

  get done(): boolean {
    return this.parts.every((part) => part.copied === part.count);
  }

  /** Copies up to `budgetEntries` more entries; true when everything is copied. */
  step(budgetEntries: number): boolean {
    let budget = budgetEntries;
    for (const part of this.parts) {
      if (budget <= 0) break;
      const take = Math.min(part.count - part.copied, budget);
      this.copy(part, take);
      budget -= take;
    }
    const done = this.done;
    if (done) this.end();
    return done;
  }

  /** The table is about to reuse `generation` (a rotation): what is left of it is copied now. */
  beforeReuse(generation: number): void {
    for (const part of this.parts) if (part.generation === generation) this.copy(part, part.count - part.copied);
    if (this.done) this.end();
  }

  /** Stops following the table; the export is unusable after. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
  }

  image(): IdempotencyImage {
    invariant(this.done, 'idempotency export read before it was complete');
    return { older: this.parts[0].into, newer: this.parts[1].into };
  }

  private copy(part: IdempotencyExport['parts'][number], take: number): void {
    if (take <= 0) return;
    const from = part.generation * this.generationSize + part.copied;
    for (const field of FIELDS) {
      const column: IdempotencyEntries[keyof IdempotencyEntries] = this.entries[field];
      part.into[field].set(column.subarray(from, from + take), part.copied);
    }
    part.copied += take;
  }
}

function allocateEntries(count: number): IdempotencyEntries {
  return {
    userId: new Uint32Array(count),
    bidId: new Float64Array(count),
    auctionKey: new Uint32Array(count),
    seq: new Float64Array(count),
    endsAt: new Float64Array(count),
    price: new Uint32Array(count),
    leading: new Uint8Array(count),
  };
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
