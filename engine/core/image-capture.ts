import { invariant } from './errors.js';
import { ENTRY_BYTES, type IdempotencyExport, type IdempotencyImage } from './idempotency.js';

/** Records copied at a time: 2^15, 1 MiB of 32-byte records (a copy on write copies one such chunk). */
export const CAPTURE_CHUNK_SHIFT = 15;

/** Snapshot content: everything `stateHash` covers plus the log position. */
export type CoreImage = {
  shard: number;
  /** Capacity is part of the shard's rules (it decides `shard_full`): restore needs the same. */
  auctionsMax: number;
  lastSeq: number;
  lastTimestampMs: number;
  nextNumber: number;
  /** The live window of auction numbers [firstNumber, nextNumber), records in number order. */
  firstNumber: number;
  records: Uint8Array;
  /**
   * Pairs (auction number, reserve) for live auctions whose reserve is not met
   * yet. In number order from `image()`; in any order from a capture (the
   * snapshot encoder sorts them).
   */
  reserves: Float64Array;
  /** Pairs (auction number, endsAt) for scheduled auctions; ordered as `reserves`. */
  scheduledEnds: Float64Array;
  remembered: IdempotencyImage;
};

/**
 * What the core hands a capture when it begins: the image's scalars and side
 * tables as they are now (pairs in any order, see sortPairs), and its live
 * storage, which the capture copies from until it is done.
 */
export type CaptureSource = Omit<CoreImage, 'records' | 'remembered'> & {
  /** The slot of `firstNumber`: number order is slot order from here, wrapping at `auctionsMax`. */
  firstSlot: number;
  recordBytes: number;
  records: Uint8Array;
  remembered: IdempotencyExport;
};

/**
 * The image of a core at one point of its sequence, copied in bounded steps
 * while the core goes on deciding. Copying a shard's records at once held its
 * event loop ~25 ms per million auctions (make bench-scale: 54-120 ms stalls at
 * 1.25M auctions a shard, with the wait for appends in flight): here each
 * `step` copies a budget of bytes, and the core calls `beforeWrite` before it
 * changes a record, which copies that record's chunk first if the capture has
 * not reached it yet (copy on write). So the image is exactly the state at
 * `lastSeq` however the steps and the writes interleave. The side tables are
 * copied when the capture begins: a Map's entries copy at ~2 ms per million.
 */
export class ImageCapture {
  private readonly target: Uint8Array;
  private readonly count: number;
  /** Per chunk of slots: 1 once copied. */
  private readonly copied: Uint8Array;
  private cursor = 0;
  private chunksLeft: number;
  private readonly chunkRecords: number;
  private ended = false;

  /** `chunkShift`: log2 of the records per chunk (small in tests, so that copies on write and wrapped windows are common). */
  constructor(
    private readonly source: CaptureSource,
    private readonly onEnd: () => void,
    private readonly chunkShift = CAPTURE_CHUNK_SHIFT,
  ) {
    this.count = source.nextNumber - source.firstNumber;
    this.target = new Uint8Array(this.count * source.recordBytes);
    this.chunkRecords = 2 ** chunkShift;
    const chunks = Math.ceil(source.auctionsMax / this.chunkRecords);
    this.copied = new Uint8Array(chunks);
    this.chunksLeft = chunks;
  }

  get lastSeq(): number {
    return this.source.lastSeq;
  }

  get done(): boolean {
    return this.chunksLeft === 0 && this.source.remembered.done;
  }

  /** The core is about to change the record in `slot`. */
  beforeWrite(slot: number): void {
    const chunk = slot >>> this.chunkShift;
    if (this.copied[chunk] === 0) this.copyChunk(chunk);
  }

  /** Copies about `budgetBytes` more; true when the image is complete (and the capture no longer follows the core). */
  step(budgetBytes: number): boolean {
    let budget = budgetBytes;
    const chunkBytes = this.chunkRecords * this.source.recordBytes;
    while (this.chunksLeft > 0 && budget > 0) {
      while (this.copied[this.cursor] === 1) this.cursor++;
      this.copyChunk(this.cursor);
      budget -= chunkBytes;
    }
    if (budget > 0) this.source.remembered.step(Math.ceil(budget / ENTRY_BYTES));
    const done = this.done;
    if (done) this.end();
    return done;
  }

  /** Stops following the core (done, or given up); the core may take another capture after. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.source.remembered.end();
    this.onEnd();
  }

  image(): CoreImage {
    invariant(this.done, 'core image read before its capture was complete');
    const { source } = this;
    // Fields in the order snapshot files have always held them (msgpack keeps an object's key order).
    return {
      shard: source.shard,
      auctionsMax: source.auctionsMax,
      lastSeq: source.lastSeq,
      lastTimestampMs: source.lastTimestampMs,
      nextNumber: source.nextNumber,
      firstNumber: source.firstNumber,
      records: this.target,
      reserves: source.reserves,
      scheduledEnds: source.scheduledEnds,
      remembered: source.remembered.image(),
    };
  }

  /**
   * Copies the live-window part of one chunk of slots to the image, where
   * records sit in number order: position = (slot - firstSlot) mod auctionsMax.
   * A chunk holding `firstSlot` is two runs of positions, split there.
   */
  private copyChunk(chunk: number): void {
    const { auctionsMax, firstSlot, recordBytes, records } = this.source;
    const from = chunk * this.chunkRecords;
    const to = Math.min(from + this.chunkRecords, auctionsMax);
    const runs = from < firstSlot && firstSlot < to ? [from, firstSlot, firstSlot, to] : [from, to];
    for (let i = 0; i < runs.length; i += 2) {
      const position = (runs[i] - firstSlot + auctionsMax) % auctionsMax;
      const length = Math.min(runs[i + 1] - runs[i], this.count - position);
      if (length > 0)
        this.target.set(
          records.subarray(runs[i] * recordBytes, (runs[i] + length) * recordBytes),
          position * recordBytes,
        );
    }
    this.copied[chunk] = 1;
    this.chunksLeft--;
  }
}

/**
 * Side-table pairs (auction number, value) sorted by number, as snapshot
 * files and state hashes hold them: a capture copies the tables in the
 * Map's order on the event loop, and the encoder (a worker) sorts.
 */
export function sortPairs(pairs: Float64Array): Float64Array {
  const order = Array.from({ length: pairs.length / 2 }, (_, i) => i);
  order.sort((a, b) => pairs[2 * a] - pairs[2 * b]);
  const sorted = new Float64Array(pairs.length);
  order.forEach((pair, i) => {
    sorted[2 * i] = pairs[2 * pair];
    sorted[2 * i + 1] = pairs[2 * pair + 1];
  });
  return sorted;
}
