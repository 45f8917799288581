import { createHash } from 'node:crypto';
import {
  auctionIdOf,
  AUCTION_NUMBER_MAX,
  isAmountCents,
  isId,
  isShard,
  isUserId,
  incrementAt,
  SHARDS_MAX,
  type AuctionState,
  bidOutcome,
  type BidOutcome,
  type CancelAuction,
  type CloseAuction,
  type Command,
  type CreateAuction,
  type CreateOutcome,
  type LifecycleOutcome,
  type OpenAuction,
  type Outcome,
  type Reason,
  type Status,
} from '../../protocol/index.js';
import { DueHeap } from './due-heap.js';
import { InvariantError, invariant } from './errors.js';
import { hashKey, IdempotencyTable, type IdempotencyEntries, type IdempotencyExport } from './idempotency.js';
import { CAPTURE_CHUNK_SHIFT, ImageCapture, sortPairs, type CaptureSource, type CoreImage } from './image-capture.js';

/** Named bounds of the core; see docs/engine-core.md. */
export const LIMITS = {
  /** Soft-close windows longer than an hour are refused at creation. */
  softCloseSecondsMax: 3_600,
  /** An auction may be scheduled to end at most this far after its creation. */
  auctionDurationMsMax: 400 * 24 * 3_600_000,
  /** The per-auction bid counter is 32 bits; a full counter rejects with `rate_limited`. */
  bidCountMax: 0xffff_ffff,
  /** Default idempotency capacity: the last 512Ki accepted bids (at most 1Mi) are remembered. */
  idempotencyEntriesDefault: 1 << 20,
  /** Per-shard slot capacity ceiling: record offsets (slot * 16 halfwords) stay in int32 range. */
  auctionsMaxCeiling: 1 << 27,
} as const;

export type CoreConfig = {
  shard: number;
  /** Auction slots of this shard: at most this many auctions are held at once. */
  auctionsMax: number;
  /** Accepted bids remembered for retries (default LIMITS.idempotencyEntriesDefault). */
  idempotencyEntriesMax?: number;
};

// Status codes in the low three bits of `flags`; the rank orders versions.
const SCHEDULED = 1;
const OPEN = 2;
const CLOSED = 3;
const CANCELLED = 4;
const STATUS_MASK = 0b111;
const HAS_RESERVE = 0b1000;
const RESERVE_MET = 0b1_0000;
const STATUS_NAMES: Record<number, Status> = { 1: 'scheduled', 2: 'open', 3: 'closed', 4: 'cancelled' };

const NOT_FOUND = -1;
const ARCHIVED = -2;

/**
 * The hot state of every auction of one shard: one 32-byte record per slot in
 * a single preallocated buffer, so deciding a bid touches one cache line.
 * Prices and maxima are 32-bit cents; user ids are 32-bit. While an auction is
 * scheduled, `dueAt` holds its start and its end waits in a sparse side table;
 * once open `dueAt` is its end.
 *
 *   bytes  0..7   dueAt (f64, ms)          f64[slot*4]
 *          8..11  price (u32, cents)       u32[slot*8 + 2]
 *         12..15  leaderMax (u32, cents)   u32[slot*8 + 3]
 *         16..19  leaderId (u32)           u32[slot*8 + 4]
 *         20..23  sellerId (u32)           u32[slot*8 + 5]
 *         24..27  bidCount (u32)           u32[slot*8 + 6]
 *         28..29  softCloseSeconds (u16)   u16[slot*16 + 14]
 *         30..31  flags (u16)              u16[slot*16 + 15]
 */
export const RECORD_BYTES = 32;
const PRICE = 2;
const LEADER_MAX = 3;
const LEADER_ID = 4;
const SELLER_ID = 5;
const BID_COUNT = 6;
const SOFT_CLOSE = 14;
const FLAGS = 15;

type Records = { bytes: Uint8Array; f64: Float64Array; u32: Uint32Array; u16: Uint16Array };

function allocateRecords(slots: number): Records {
  const buffer = new ArrayBuffer(slots * RECORD_BYTES);
  return {
    bytes: new Uint8Array(buffer),
    f64: new Float64Array(buffer),
    u32: new Uint32Array(buffer),
    u16: new Uint16Array(buffer),
  };
}

export type { CoreImage } from './image-capture.js';

/**
 * The deterministic auction state machine of one shard. It never reads a
 * clock, randomness or I/O: every command comes with its sequence number and
 * time, and the same commands in the same order give the same state anywhere.
 *
 * Auction numbers map to slots modulo `auctionsMax`; the slot of an auction
 * is recycled when `auctionsMax` newer auctions exist, which is only allowed
 * once it has ended (else creation answers `shard_full`). Bids for such an
 * archived auction are answered `auction_closed`.
 */
export class AuctionCore {
  readonly shard: number;
  readonly auctionsMax: number;
  private readonly rec: Records;
  private readonly reserves = new Map<number, number>();
  private readonly scheduledEnds = new Map<number, number>();
  private readonly due: DueHeap;
  private readonly remembered: IdempotencyTable;
  private nextNumber = 1;
  private seq = 0;
  private timestampMs = 0;
  /** Reused answer of `placeBid`: copy it before the next call. */
  private readonly bidOut: BidOutcome = emptyBidOutcome();
  /** The image being copied in steps (beginImage), told before every record or side-table change. */
  private capture: ImageCapture | null = null;

  constructor(config: CoreConfig) {
    invariant(isShard(config.shard), `shard out of range: ${config.shard}`);
    invariant(
      Number.isInteger(config.auctionsMax) &&
        config.auctionsMax >= 1 &&
        config.auctionsMax <= LIMITS.auctionsMaxCeiling,
      `auctionsMax out of range: ${config.auctionsMax}`,
    );
    this.shard = config.shard;
    this.auctionsMax = config.auctionsMax;
    this.rec = allocateRecords(config.auctionsMax);
    this.due = new DueHeap(config.auctionsMax, this.rec.f64, 4, (slot) => this.numberOfSlot(slot));
    this.remembered = new IdempotencyTable(config.idempotencyEntriesMax ?? LIMITS.idempotencyEntriesDefault);
  }

  /** Sequence number of the last applied command (0 before any). */
  get lastSeq(): number {
    return this.seq;
  }

  get lastTimestampMs(): number {
    return this.timestampMs;
  }

  /** Auctions created so far on this shard (archived ones included). */
  get auctionsCreated(): number {
    return this.nextNumber - 1;
  }

  /** Auctions currently waiting to open or close. */
  get auctionsLive(): number {
    return this.due.size;
  }

  /** Applies one command decided at `timestampMs` as shard event `seq`. */
  apply(command: Command, seq: number, timestampMs: number): Outcome {
    switch (command.type) {
      case 'create':
        return this.create(command, seq, timestampMs);
      case 'bid':
        return copyBidOutcome(
          this.placeBid(command.auctionId, command.bidderId, command.bidId, command.maxBid, seq, timestampMs),
        );
      case 'open':
        return this.open(command, seq, timestampMs);
      case 'close':
        return this.close(command, seq, timestampMs);
      case 'cancel':
        return this.cancel(command, seq, timestampMs);
      default:
        throw new InvariantError(`unknown command type: ${String((command as { type: unknown }).type)}`);
    }
  }

  create(command: CreateAuction, seq: number, t: number): CreateOutcome {
    this.advance(seq, t);
    const reason = this.checkCreate(command, t);
    if (reason !== null) return { type: 'create', status: 'rejected', reason, auctionId: 0 };
    const number = this.nextNumber++;
    const slot = this.slotOf(number);
    const scheduled = command.startsAt > t;
    this.capture?.beforeWrite(slot);
    const { f64, u32, u16 } = this.rec;
    u16[(slot << 4) + FLAGS] = (scheduled ? SCHEDULED : OPEN) | (command.reservePrice > 0 ? HAS_RESERVE : 0);
    f64[slot << 2] = scheduled ? command.startsAt : command.endsAt;
    u32[(slot << 3) + PRICE] = command.startingPrice;
    u32[(slot << 3) + LEADER_MAX] = 0;
    u32[(slot << 3) + LEADER_ID] = 0;
    u32[(slot << 3) + SELLER_ID] = command.sellerId;
    u32[(slot << 3) + BID_COUNT] = 0;
    u16[(slot << 4) + SOFT_CLOSE] = command.softCloseSeconds;
    if (scheduled) this.scheduledEnds.set(slot, command.endsAt);
    if (command.reservePrice > 0) this.reserves.set(slot, command.reservePrice);
    this.due.push(slot);
    return {
      type: 'create',
      status: 'accepted',
      auctionId: auctionIdOf(number, this.shard),
      auctionStatus: scheduled ? 'scheduled' : 'open',
    };
  }

  /**
   * Decides a bid. The answer object is reused by the next call: callers that
   * keep it must copy it (`apply` does). Checks run in BID_CHECK_ORDER.
   */
  placeBid(auctionId: number, bidderId: number, bidId: number, maxBid: number, seq: number, t: number): BidOutcome {
    this.advance(seq, t);
    const out = this.bidOut;
    // Every path below sets every other field of the answer.
    out.auctionId = auctionId;
    out.bidId = bidId;
    out.seq = seq;
    out.duplicate = false;
    if (!isUserId(bidderId) || !isId(bidId)) return this.rejectBid(out, 'invalid_request', -1, bidderId);
    const keyHash = hashKey(bidderId, bidId);
    const known = this.remembered.find(bidderId, bidId, keyHash);
    if (known >= 0) return this.answerDuplicate(out, known, auctionId);
    if (!isAmountCents(maxBid)) return this.rejectBid(out, 'invalid_amount', -1, bidderId);
    const slot = this.resolve(auctionId);
    if (slot === NOT_FOUND) return this.rejectBid(out, 'auction_not_found', -1, bidderId);
    if (slot === ARCHIVED) return this.rejectBid(out, 'auction_closed', -1, bidderId);
    const { f64, u32, u16 } = this.rec;
    const status = u16[(slot << 4) + FLAGS] & STATUS_MASK;
    if (status === CLOSED || status === CANCELLED || (status === OPEN && t >= f64[slot << 2])) {
      return this.rejectBid(out, 'auction_closed', slot, bidderId);
    }
    if (status === SCHEDULED) return this.rejectBid(out, 'auction_not_open', slot, bidderId);
    if (u32[(slot << 3) + SELLER_ID] === bidderId) return this.rejectBid(out, 'seller_cannot_bid', slot, bidderId);
    if (u32[(slot << 3) + BID_COUNT] === LIMITS.bidCountMax) return this.rejectBid(out, 'rate_limited', slot, bidderId);
    return this.decideBid(out, slot, bidderId, bidId, keyHash, maxBid, t);
  }

  /**
   * Loads the memory a coming `placeBid` will touch (the auction's record and
   * the idempotency cells) without changing anything. Deciding a bid costs
   * about one dependent DRAM miss per structure when the shard is large; a
   * batch that warms all its bids first lets those misses overlap, then
   * decides from cache. Returns a meaningless number so the loads cannot be
   * optimised away.
   */
  warm(auctionId: number, bidderId: number, bidId: number): number {
    let touched = this.remembered.warm(bidderId >>> 0, bidId);
    const number = Math.floor(auctionId / SHARDS_MAX);
    if (number >= 1 && number < this.nextNumber && auctionId - number * SHARDS_MAX === this.shard) {
      touched += this.rec.u32[(this.slotOf(number) << 3) + PRICE];
    }
    return touched;
  }

  open(command: OpenAuction, seq: number, t: number): LifecycleOutcome {
    this.advance(seq, t);
    const slot = this.resolve(command.auctionId);
    const rejected = this.checkLifecycle('open', command.auctionId, slot);
    if (rejected) return rejected;
    const { f64, u16 } = this.rec;
    const status = u16[(slot << 4) + FLAGS] & STATUS_MASK;
    if (status === OPEN) return this.lifecycleOutcome('open', command.auctionId, slot, 'invalid_request');
    if (t < f64[slot << 2]) return this.lifecycleOutcome('open', command.auctionId, slot, 'not_due');
    this.capture?.beforeWrite(slot);
    u16[(slot << 4) + FLAGS] = (u16[(slot << 4) + FLAGS] & ~STATUS_MASK) | OPEN;
    f64[slot << 2] = this.scheduledEnds.get(slot)!;
    this.scheduledEnds.delete(slot);
    this.due.update(slot);
    return this.lifecycleOutcome('open', command.auctionId, slot);
  }

  close(command: CloseAuction, seq: number, t: number): LifecycleOutcome {
    this.advance(seq, t);
    const slot = this.resolve(command.auctionId);
    const rejected = this.checkLifecycle('close', command.auctionId, slot);
    if (rejected) return rejected;
    const { f64, u16 } = this.rec;
    const status = u16[(slot << 4) + FLAGS] & STATUS_MASK;
    this.capture?.beforeWrite(slot);
    if (!command.force) {
      if (status === SCHEDULED) return this.lifecycleOutcome('close', command.auctionId, slot, 'auction_not_open');
      if (t < f64[slot << 2]) return this.lifecycleOutcome('close', command.auctionId, slot, 'not_due');
    } else if (t < f64[slot << 2] || status === SCHEDULED) {
      // An operator's close ends the auction now.
      f64[slot << 2] = t;
    }
    this.end(slot, CLOSED);
    return this.lifecycleOutcome('close', command.auctionId, slot);
  }

  cancel(command: CancelAuction, seq: number, t: number): LifecycleOutcome {
    this.advance(seq, t);
    const slot = this.resolve(command.auctionId);
    const rejected = this.checkLifecycle('cancel', command.auctionId, slot);
    if (rejected) return rejected;
    this.capture?.beforeWrite(slot);
    if (t < this.rec.f64[slot << 2] || (this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK) === SCHEDULED)
      this.rec.f64[slot << 2] = t;
    this.end(slot, CANCELLED);
    return this.lifecycleOutcome('cancel', command.auctionId, slot);
  }

  /** When the next timer command falls due (Infinity when none). */
  nextDueAt(): number {
    const slot = this.due.peek();
    return slot < 0 ? Infinity : this.rec.f64[slot << 2];
  }

  /**
   * The timer command due first at time `t`, if any. It does not change the
   * state: the engine applies (and logs) the command, which moves the timer.
   */
  takeDue(t: number): OpenAuction | CloseAuction | null {
    const slot = this.due.peek();
    if (slot < 0 || this.rec.f64[slot << 2] > t) return null;
    const auctionId = auctionIdOf(this.numberOfSlot(slot), this.shard);
    const status = this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK;
    if (status === SCHEDULED) return { type: 'open', auctionId };
    invariant(status === OPEN, `ended auction ${auctionId} still has a timer`);
    return { type: 'close', auctionId, force: false };
  }

  /**
   * The answer a retry of (bidderId, bidId) on `auctionId` would get without
   * being logged: the original result, or null when the bid id is not
   * remembered (or was used for another auction: deciding it logs the refusal).
   */
  lookupBid(bidderId: number, bidId: number, auctionId: number): BidOutcome | null {
    if (!isUserId(bidderId) || !isId(bidId)) return null;
    const known = this.remembered.find(bidderId, bidId);
    if (known < 0 || this.remembered.read(known).auctionKey !== auctionId >>> 0) return null;
    const out = emptyBidOutcome();
    out.bidId = bidId;
    return copyBidOutcome(this.answerDuplicate(out, known, auctionId));
  }

  /** Public state of one auction, or null when this shard does not hold it. */
  auctionState(auctionId: number): AuctionState | null {
    const slot = this.resolve(auctionId);
    if (slot < 0) return null;
    const { f64, u32, u16 } = this.rec;
    const flags = u16[(slot << 4) + FLAGS];
    const status = flags & STATUS_MASK;
    const reserveMet = (flags & RESERVE_MET) !== 0;
    const hasWinner =
      status === CLOSED && u32[(slot << 3) + LEADER_ID] !== 0 && ((flags & HAS_RESERVE) === 0 || reserveMet);
    return {
      auctionId,
      sellerId: u32[(slot << 3) + SELLER_ID],
      status: STATUS_NAMES[status],
      price: u32[(slot << 3) + PRICE],
      leaderId: u32[(slot << 3) + LEADER_ID],
      bidCount: u32[(slot << 3) + BID_COUNT],
      startsAt: status === SCHEDULED ? f64[slot << 2] : 0,
      endsAt: this.endsAtOf(slot),
      softCloseSeconds: u16[(slot << 4) + SOFT_CLOSE],
      version: this.versionOf(slot),
      hasReserve: (flags & HAS_RESERVE) !== 0,
      reserveMet,
      winnerId: hasWinner ? u32[(slot << 3) + LEADER_ID] : 0,
    };
  }

  /**
   * A digest of everything that decides future outcomes: the live auctions,
   * the side tables and the remembered bids. The log position is not part of
   * it (a logged rejection changes nothing); compare `lastSeq` beside it.
   */
  stateHash(): string {
    const image = this.image();
    const hash = createHash('sha256');
    const header = new Float64Array([image.shard, image.auctionsMax, image.nextNumber, image.firstNumber]);
    hash.update(bytesOf(header));
    hash.update(image.records);
    hash.update(bytesOf(image.reserves));
    hash.update(bytesOf(image.scheduledEnds));
    for (const generation of [image.remembered.older, image.remembered.newer]) {
      hash.update(new Float64Array([generation.userId.length]));
      for (const key of Object.keys(generation).sort() as (keyof IdempotencyEntries)[])
        hash.update(bytesOf(generation[key]));
    }
    return hash.digest('hex');
  }

  /** A copy of the whole state in auction-number order (hashes, tests), taken at once. */
  image(): CoreImage {
    const capture = new ImageCapture(this.captureSource(this.remembered.exportAtOnce()), () => {});
    capture.step(Infinity);
    const image = capture.image();
    return { ...image, reserves: sortPairs(image.reserves), scheduledEnds: sortPairs(image.scheduledEnds) };
  }

  /**
   * Begins a copy of the state as it is now, taken in steps (`step`) while
   * this core goes on deciding: snapshots of large shards without holding the
   * event loop for the whole copy (engine/core/image-capture.ts). One at a
   * time; the capture lets go of the core when it is complete or ended.
   */
  beginImage(chunkShift = CAPTURE_CHUNK_SHIFT): ImageCapture {
    invariant(this.capture === null, 'a capture of this core is already being taken');
    const capture = new ImageCapture(
      this.captureSource(this.remembered.beginExport()),
      () => {
        if (this.capture === capture) this.capture = null;
      },
      chunkShift,
    );
    this.capture = capture;
    return capture;
  }

  private captureSource(remembered: IdempotencyExport): CaptureSource {
    const firstNumber = this.firstLiveNumber();
    return {
      shard: this.shard,
      auctionsMax: this.auctionsMax,
      lastSeq: this.seq,
      lastTimestampMs: this.timestampMs,
      nextNumber: this.nextNumber,
      firstNumber,
      firstSlot: this.slotOf(firstNumber),
      recordBytes: RECORD_BYTES,
      records: this.rec.bytes,
      reserves: this.sideTableImage(this.reserves, firstNumber),
      scheduledEnds: this.sideTableImage(this.scheduledEnds, firstNumber),
      remembered,
    };
  }

  /**
   * Rebuilds a core from an image. The capacity must be the shard's own: it
   * decides which auctions are archived and when the shard is full, so a
   * replica with another capacity could decide differently.
   */
  static fromImage(image: CoreImage, config: Omit<CoreConfig, 'shard'>): AuctionCore {
    if (image.auctionsMax !== config.auctionsMax) {
      throw new InvariantError(
        `snapshot of shard ${image.shard} was taken with auctionsMax ${image.auctionsMax}, not ${config.auctionsMax}`,
      );
    }
    const core = new AuctionCore({ ...config, shard: image.shard });
    const count = image.nextNumber - image.firstNumber;
    invariant(count <= core.auctionsMax, `image holds ${count} auctions, capacity is ${core.auctionsMax}`);
    invariant(image.firstNumber >= 1 && count >= 0 && image.nextNumber - 1 <= AUCTION_NUMBER_MAX, 'bad image window');
    core.nextNumber = image.nextNumber;
    core.seq = image.lastSeq;
    core.timestampMs = image.lastTimestampMs;
    invariant(core.firstLiveNumber() === image.firstNumber, 'image window does not match its capacity');
    const start = core.slotOf(image.firstNumber);
    invariant(image.records.length === count * RECORD_BYTES, 'image records have the wrong length');
    pasteRing(core.rec.bytes, start * RECORD_BYTES, image.records);
    core.loadSideTable(core.reserves, image.reserves);
    core.loadSideTable(core.scheduledEnds, image.scheduledEnds);
    core.remembered.import(image.remembered);
    for (let number = image.firstNumber; number < image.nextNumber; number++) {
      const slot = core.slotOf(number);
      const status = core.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK;
      invariant(status >= SCHEDULED && status <= CANCELLED, `image slot ${slot} has no status`);
      if (status === SCHEDULED || status === OPEN) core.due.push(slot);
    }
    return core;
  }

  /**
   * The expensive sweep of every invariant (run under VERIFY=1 and in tests):
   * price never above the leader's maximum, side tables only where flagged,
   * timers exactly for live auctions, heap and index structure intact.
   */
  verify(): void {
    const { u32, u16 } = this.rec;
    let live = 0;
    for (let number = this.firstLiveNumber(); number < this.nextNumber; number++) {
      const slot = this.slotOf(number);
      const flags = u16[(slot << 4) + FLAGS];
      const status = flags & STATUS_MASK;
      invariant(status >= SCHEDULED && status <= CANCELLED, `auction ${number}: bad status ${status}`);
      const leader = u32[(slot << 3) + LEADER_ID];
      invariant(
        leader === 0
          ? u32[(slot << 3) + LEADER_MAX] === 0 && u32[(slot << 3) + BID_COUNT] === 0
          : u32[(slot << 3) + PRICE] <= u32[(slot << 3) + LEADER_MAX],
        `auction ${number}: price above the leader's maximum`,
      );
      invariant(
        this.reserves.has(slot) === ((flags & HAS_RESERVE) !== 0 && (flags & RESERVE_MET) === 0 && status <= OPEN),
        `auction ${number}: reserve side table out of step`,
      );
      invariant(this.scheduledEnds.has(slot) === (status === SCHEDULED), `auction ${number}: schedule out of step`);
      invariant(this.due.has(slot) === status <= OPEN, `auction ${number}: timer out of step`);
      if (status <= OPEN) live++;
    }
    invariant(live === this.due.size, 'timers for auctions outside the live window');
    this.due.verify();
    this.remembered.verify();
  }

  // --- internals -----------------------------------------------------------

  private advance(seq: number, t: number): void {
    if (seq !== this.seq + 1) throw new InvariantError(`sequence gap: expected ${this.seq + 1}, got ${seq}`);
    if (!Number.isSafeInteger(t) || t < this.timestampMs) {
      throw new InvariantError(`time must be a non-decreasing integer: ${t} after ${this.timestampMs}`);
    }
    this.seq = seq;
    this.timestampMs = t;
  }

  private checkCreate(c: CreateAuction, t: number): Reason | null {
    if (!isUserId(c.sellerId)) return 'invalid_request';
    if (!isAmountCents(c.startingPrice)) return 'invalid_amount';
    if (c.reservePrice !== 0 && !(isAmountCents(c.reservePrice) && c.reservePrice >= c.startingPrice)) {
      return 'invalid_amount';
    }
    if (!Number.isSafeInteger(c.startsAt) || c.startsAt < 0) return 'invalid_request';
    if (!Number.isSafeInteger(c.endsAt) || c.endsAt <= Math.max(c.startsAt, t)) return 'invalid_request';
    if (c.endsAt - t > LIMITS.auctionDurationMsMax) return 'invalid_request';
    if (
      !Number.isInteger(c.softCloseSeconds) ||
      c.softCloseSeconds < 0 ||
      c.softCloseSeconds > LIMITS.softCloseSecondsMax
    ) {
      return 'invalid_request';
    }
    if (this.nextNumber > AUCTION_NUMBER_MAX) return 'shard_full';
    if (this.nextNumber > this.auctionsMax) {
      // The slot's previous auction must have ended before it is archived.
      const slot = this.slotOf(this.nextNumber);
      if ((this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK) <= OPEN) return 'shard_full';
    }
    return null;
  }

  /** The proxy-bidding rules (docs/engine-core.md#rules-of-bidding), for a bid that passed every other check. */
  private decideBid(
    out: BidOutcome,
    slot: number,
    bidderId: number,
    bidId: number,
    keyHash: number,
    maxBid: number,
    t: number,
  ): BidOutcome {
    const { f64, u32, u16 } = this.rec;
    const price = u32[(slot << 3) + PRICE];
    const leader = u32[(slot << 3) + LEADER_ID];
    const leaderMax = u32[(slot << 3) + LEADER_MAX];
    let newPrice = price;
    let newLeader = bidderId;
    let newMax = maxBid;
    if (leader === 0) {
      // The first bid must reach the starting price and sets the price to it.
      if (maxBid < price) return this.rejectBid(out, 'bid_too_low', slot, bidderId);
    } else if (leader === bidderId) {
      // A leader may only raise their maximum; the price does not move for it.
      if (maxBid <= leaderMax) return this.rejectBid(out, 'bid_too_low', slot, bidderId);
    } else {
      if (maxBid < price + incrementAt(price)) return this.rejectBid(out, 'bid_too_low', slot, bidderId);
      if (maxBid > leaderMax) {
        newPrice = Math.min(maxBid, leaderMax + incrementAt(leaderMax));
      } else {
        // Equal maxima: the earlier bid keeps the lead.
        newLeader = leader;
        newMax = leaderMax;
        newPrice = Math.min(leaderMax, maxBid + incrementAt(maxBid));
      }
    }
    this.capture?.beforeWrite(slot);
    let flags = u16[(slot << 4) + FLAGS];
    if ((flags & (HAS_RESERVE | RESERVE_MET)) === HAS_RESERVE) {
      const reserve = this.reserves.get(slot)!;
      if (newMax >= reserve) {
        if (reserve > newPrice) newPrice = reserve;
        flags |= RESERVE_MET;
        u16[(slot << 4) + FLAGS] = flags;
        this.reserves.delete(slot);
      }
    }
    if (newPrice !== price || newLeader !== leader) this.softClose(slot, t);
    u32[(slot << 3) + PRICE] = newPrice;
    u32[(slot << 3) + LEADER_ID] = newLeader;
    u32[(slot << 3) + LEADER_MAX] = newMax;
    u32[(slot << 3) + BID_COUNT] += 1;
    out.status = 'accepted';
    out.reason = undefined;
    out.price = newPrice;
    out.leading = newLeader === bidderId;
    out.leaderId = newLeader;
    out.outbidUserId = newLeader !== leader && leader !== 0 ? leader : 0;
    out.endsAt = f64[slot << 2];
    out.bidCount = u32[(slot << 3) + BID_COUNT];
    out.version = this.versionOf(slot);
    out.reserveMet = (flags & RESERVE_MET) !== 0;
    this.remembered.remember(
      bidderId,
      bidId,
      { auctionKey: out.auctionId >>> 0, price: newPrice, endsAt: out.endsAt, leading: out.leading, seq: out.seq },
      keyHash,
    );
    return out;
  }

  /** A bid that moves the price or the leader in the last N seconds pushes the end to t + N. */
  private softClose(slot: number, t: number): void {
    const extendedEnd = t + this.rec.u16[(slot << 4) + SOFT_CLOSE] * 1000;
    if (extendedEnd > this.rec.f64[slot << 2]) {
      this.rec.f64[slot << 2] = extendedEnd;
      this.due.update(slot);
    }
  }

  private rejectBid(out: BidOutcome, reason: Reason, slot: number, bidderId: number): BidOutcome {
    out.status = 'rejected';
    out.reason = reason;
    out.outbidUserId = 0;
    if (slot < 0) {
      out.price = 0;
      out.leading = false;
      out.leaderId = 0;
      out.endsAt = 0;
      out.bidCount = 0;
      out.version = 0;
      out.reserveMet = false;
    } else {
      const { u32, u16 } = this.rec;
      out.price = u32[(slot << 3) + PRICE];
      out.leaderId = u32[(slot << 3) + LEADER_ID];
      out.leading = u32[(slot << 3) + LEADER_ID] === bidderId && bidderId !== 0;
      out.endsAt = this.endsAtOf(slot);
      out.bidCount = u32[(slot << 3) + BID_COUNT];
      out.version = this.versionOf(slot);
      out.reserveMet = (u16[(slot << 4) + FLAGS] & RESERVE_MET) !== 0;
    }
    return out;
  }

  /** A remembered bid id: the original answer for a retry, a refusal if reused for another auction. */
  private answerDuplicate(out: BidOutcome, handle: number, auctionId: number): BidOutcome {
    const original = this.remembered.read(handle);
    if (original.auctionKey !== auctionId >>> 0) return this.rejectBid(out, 'invalid_request', -1, 0);
    out.status = 'accepted';
    out.reason = undefined;
    out.duplicate = true;
    out.leaderId = 0;
    out.outbidUserId = 0;
    out.bidCount = 0;
    out.version = 0;
    out.reserveMet = false;
    out.auctionId = auctionId;
    out.price = original.price;
    out.leading = original.leading;
    out.endsAt = original.endsAt;
    out.seq = original.seq;
    return out;
  }

  private checkLifecycle(type: LifecycleOutcome['type'], auctionId: number, slot: number): LifecycleOutcome | null {
    if (slot === NOT_FOUND) return this.lifecycleOutcome(type, auctionId, slot, 'auction_not_found');
    if (slot === ARCHIVED) return this.lifecycleOutcome(type, auctionId, slot, 'auction_closed');
    if ((this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK) > OPEN)
      return this.lifecycleOutcome(type, auctionId, slot, 'auction_closed');
    return null;
  }

  private end(slot: number, status: typeof CLOSED | typeof CANCELLED): void {
    const { u16 } = this.rec;
    u16[(slot << 4) + FLAGS] = (u16[(slot << 4) + FLAGS] & ~STATUS_MASK) | status;
    // Side tables hold only live auctions; an ended one keeps its flags.
    this.scheduledEnds.delete(slot);
    this.reserves.delete(slot);
    this.due.remove(slot);
  }

  private lifecycleOutcome(
    type: LifecycleOutcome['type'],
    auctionId: number,
    slot: number,
    reason?: Reason,
  ): LifecycleOutcome {
    const outcome: LifecycleOutcome = {
      type,
      status: reason ? 'rejected' : 'accepted',
      auctionId,
      winnerId: 0,
      price: 0,
      reserveMet: false,
      version: 0,
    };
    if (reason) outcome.reason = reason;
    if (slot >= 0) {
      const state = this.auctionState(auctionId)!;
      outcome.auctionStatus = state.status;
      outcome.winnerId = state.winnerId;
      outcome.price = state.price;
      outcome.reserveMet = state.reserveMet;
      outcome.version = state.version;
    }
    return outcome;
  }

  /** Slot of an auction of this shard, NOT_FOUND, or ARCHIVED (ended and recycled). */
  private resolve(auctionId: number): number {
    if (!isId(auctionId)) return NOT_FOUND;
    // Float division, not `%`: ids pass 2^31 and V8 compiles a double `%` to a call.
    const number = Math.floor(auctionId / SHARDS_MAX);
    if (auctionId - number * SHARDS_MAX !== this.shard) return NOT_FOUND;
    if (number < 1 || number >= this.nextNumber) return NOT_FOUND;
    if (number < this.nextNumber - this.auctionsMax) return ARCHIVED;
    return this.slotOf(number);
  }

  /** The slot of an auction number: (number - 1) mod auctionsMax, without a double `%`. */
  private slotOf(number: number): number {
    const index = number - 1;
    return index - Math.floor(index / this.auctionsMax) * this.auctionsMax;
  }

  private firstLiveNumber(): number {
    return Math.max(1, this.nextNumber - this.auctionsMax);
  }

  private numberOfSlot(slot: number): number {
    const first = this.firstLiveNumber();
    const firstSlot = this.slotOf(first);
    return first + ((slot - firstSlot + this.auctionsMax) % this.auctionsMax);
  }

  private endsAtOf(slot: number): number {
    const scheduled = (this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK) === SCHEDULED;
    return scheduled ? this.scheduledEnds.get(slot)! : this.rec.f64[slot << 2];
  }

  /**
   * Versions are derived, not stored: every accepted bid adds one to the bid
   * count and every status change moves the rank up (scheduled 1, open 2,
   * ended 3), so the sum grows with every change of the auction.
   */
  private versionOf(slot: number): number {
    const status = this.rec.u16[(slot << 4) + FLAGS] & STATUS_MASK;
    return this.rec.u32[(slot << 3) + BID_COUNT] + (status === SCHEDULED ? 1 : status === OPEN ? 2 : 3);
  }

  /** Pairs (auction number, value) in the Map's order: forEach into a typed array, ~2 ms per million entries. */
  private sideTableImage(table: Map<number, number>, firstNumber: number): Float64Array {
    const pairs = new Float64Array(table.size * 2);
    const firstSlot = this.slotOf(firstNumber);
    const slots = this.auctionsMax;
    let at = 0;
    table.forEach((value, slot) => {
      pairs[at++] = firstNumber + (slot >= firstSlot ? slot - firstSlot : slot - firstSlot + slots);
      pairs[at++] = value;
    });
    return pairs;
  }

  private loadSideTable(table: Map<number, number>, pairs: Float64Array): void {
    invariant(pairs.length % 2 === 0, 'side table image has an odd length');
    for (let i = 0; i < pairs.length; i += 2) {
      const number = pairs[i];
      invariant(
        number >= this.firstLiveNumber() && number < this.nextNumber,
        `side table names auction ${number} outside the window`,
      );
      table.set(this.slotOf(number), pairs[i + 1]);
    }
  }
}

type TypedArray = Float64Array | Uint32Array | Uint16Array | Uint8Array;

function bytesOf(array: TypedArray): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

function pasteRing(target: TypedArray, start: number, values: TypedArray): void {
  const firstPart = Math.min(values.length, target.length - start);
  target.set(values.subarray(0, firstPart), start);
  target.set(values.subarray(firstPart), 0);
}

/** A standalone copy of a (reused) bid answer, without the unset `reason`. */
export function copyBidOutcome(o: BidOutcome): BidOutcome {
  return bidOutcome(
    o.status,
    o.reason,
    o.auctionId,
    o.bidId,
    o.price,
    o.leading,
    o.leaderId,
    o.outbidUserId,
    o.endsAt,
    o.bidCount,
    o.version,
    o.reserveMet,
    o.duplicate,
    o.seq,
  );
}

function emptyBidOutcome(): BidOutcome {
  const out = {} as BidOutcome;
  resetBidOutcome(out, 0, 0, 0);
  return out;
}

function resetBidOutcome(out: BidOutcome, auctionId: number, bidId: number, seq: number): void {
  out.type = 'bid';
  out.status = 'rejected';
  out.reason = undefined;
  out.auctionId = auctionId;
  out.bidId = bidId;
  out.price = 0;
  out.leading = false;
  out.leaderId = 0;
  out.outbidUserId = 0;
  out.endsAt = 0;
  out.bidCount = 0;
  out.version = 0;
  out.reserveMet = false;
  out.duplicate = false;
  out.seq = seq;
}
