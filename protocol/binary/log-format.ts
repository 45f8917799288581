import type { BidOutcome, PlaceBid } from '../commands.js';
import type { LogBatch, LogEvent } from '../batches.js';
import { BatchFormatError, checkCount, openBatch, trailerPackr, writeHeaderStart } from './header.js';
import {
  FLAG_RESERVE_MET,
  fitsOutcomeRecord,
  isAccepted,
  OUTCOME,
  readOutcomeRecord,
  writeOutcomeRecord,
} from './bid-outcome-record.js';

/**
 * The shard log's batches (one JetStream message each), version 1, byte by
 * byte in docs/wire-format.md: a 40-byte header, one 80-byte record per bid
 * event (the bidder and the maximum, then the bid outcome record of a results
 * batch: protocol/binary/bid-outcome-record.ts), and a trailing msgpack section with the writer, the fence's leader
 * and every other event (creations, closes, text: the rare, variable parts).
 * A bid record is decoded with no lookup of field names and no record
 * definitions to read first, which is what made msgpack batches of a few
 * events expensive to every reader (gateways, replicas, the audit).
 */
export const LOG_HEADER_BYTES = 40;
export const LOG_BID_RECORD_BYTES = 80;
/** Where a bid event record's outcome record starts (after bidderId and maxBid). */
const OUTCOME_AT = 16;

type Trailer = { writer: string; leader?: LogBatch['leader']; events: [index: number, event: LogEvent][] };

/** A bid event the fixed record holds exactly; any other goes to the trailer as it is. */
function isRecordBid(event: LogEvent): boolean {
  const { command, outcome } = event;
  if (command.type !== 'bid' || outcome.type !== 'bid' || event.text !== undefined) return false;
  return (
    outcome.auctionId === command.auctionId &&
    outcome.bidId === command.bidId &&
    outcome.seq === event.seq &&
    !outcome.duplicate &&
    fitsOutcomeRecord(outcome)
  );
}

export function encodeLogBatch(batch: LogBatch): Uint8Array {
  const { events } = batch;
  const trailer: Trailer = { writer: batch.writer, events: [] };
  if (batch.leader) trailer.leader = batch.leader;
  let bids = 0;
  const regular = new Uint8Array(events.length);
  for (let i = 0; i < events.length; i++) {
    if (isRecordBid(events[i])) {
      regular[i] = 1;
      bids++;
    } else trailer.events.push([i, events[i]]);
  }
  const trailerBytes = trailerPackr.pack(trailer);
  const recordsAt = LOG_HEADER_BYTES;
  const trailerAt = recordsAt + bids * LOG_BID_RECORD_BYTES;
  const out = new Uint8Array(trailerAt + trailerBytes.length);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  writeHeaderStart(view, 'log');
  view.setUint32(4, batch.shard, true);
  view.setFloat64(8, batch.t, true);
  view.setUint32(16, events.length, true);
  view.setUint32(20, bids, true);
  view.setUint32(24, trailerBytes.length, true);
  let at = recordsAt;
  for (let i = 0; i < events.length; i++) {
    if (regular[i] === 0) continue;
    const event = events[i];
    const command = event.command as PlaceBid;
    const o = event.outcome as BidOutcome;
    view.setFloat64(at, command.bidderId, true);
    view.setFloat64(at + 8, command.maxBid, true);
    writeOutcomeRecord(view, at + OUTCOME_AT, o, i);
    at += LOG_BID_RECORD_BYTES;
  }
  out.set(trailerBytes, trailerAt);
  return out;
}

/**
 * A log batch read in place: the header and trailer are read up front, a
 * bid record's fields only when asked for. A reader interested in a few
 * auctions (a gateway's live feed) looks at each record's auction id and
 * builds nothing for the others.
 */
export class LogBatchView {
  readonly shard: number;
  readonly t: number;
  readonly count: number;
  /** Bid records, in batch order. */
  readonly bids: number;
  readonly writer: string;
  readonly leader: LogBatch['leader'] | undefined;
  /** Every other event with its index in the batch, in batch order. */
  readonly others: [index: number, event: LogEvent][];
  private readonly view: DataView;

  constructor(bytes: Uint8Array) {
    const view = openBatch(bytes, 'log', LOG_HEADER_BYTES);
    this.view = view;
    this.shard = view.getUint32(4, true);
    this.t = view.getFloat64(8, true);
    this.count = view.getUint32(16, true);
    this.bids = view.getUint32(20, true);
    const trailerLength = view.getUint32(24, true);
    checkCount(this.count, 'events', 'log');
    const trailerAt = LOG_HEADER_BYTES + this.bids * LOG_BID_RECORD_BYTES;
    if (this.bids > this.count || trailerAt + trailerLength !== bytes.length)
      throw new BatchFormatError(
        `log batch: ${bytes.length} bytes, expected ${trailerAt + trailerLength} for ${this.bids} bid records and a ${trailerLength}-byte trailer`,
      );
    let trailer: Trailer;
    try {
      trailer = trailerPackr.unpack(bytes.subarray(trailerAt)) as Trailer;
    } catch (error) {
      throw new BatchFormatError(`log batch: unreadable trailer (${(error as Error).message})`);
    }
    if (typeof trailer?.writer !== 'string' || !Array.isArray(trailer.events))
      throw new BatchFormatError('log batch: the trailer has no writer or no events');
    if (this.bids + trailer.events.length !== this.count)
      throw new BatchFormatError(`log batch: ${this.bids + trailer.events.length} events of ${this.count}`);
    // Records and trailer entries are each in batch order and together hold every index once.
    let r = 0;
    let o = 0;
    for (let i = 0; i < this.count; i++) {
      if (r < this.bids && this.index(r) === i) r++;
      else if (o < trailer.events.length && Array.isArray(trailer.events[o]) && trailer.events[o][0] === i) o++;
      else throw new BatchFormatError(`log batch: no event, or more than one, at index ${i} of ${this.count}`);
    }
    this.writer = trailer.writer;
    this.leader = trailer.leader;
    this.others = trailer.events;
  }

  /** Where record r's outcome record starts. */
  private at(r: number): number {
    return LOG_HEADER_BYTES + r * LOG_BID_RECORD_BYTES + OUTCOME_AT;
  }

  index(r: number): number {
    return this.view.getUint32(this.at(r) + OUTCOME.index, true);
  }
  auctionId(r: number): number {
    return this.view.getFloat64(this.at(r) + OUTCOME.auctionId, true);
  }
  accepted(r: number): boolean {
    return isAccepted(this.view, this.at(r));
  }
  price(r: number): number {
    return this.view.getUint32(this.at(r) + OUTCOME.price, true);
  }
  leaderId(r: number): number {
    return this.view.getUint32(this.at(r) + OUTCOME.leaderId, true);
  }
  bidCount(r: number): number {
    return this.view.getUint32(this.at(r) + OUTCOME.bidCount, true);
  }
  version(r: number): number {
    return this.view.getUint32(this.at(r) + OUTCOME.version, true);
  }
  endsAt(r: number): number {
    return this.view.getFloat64(this.at(r) + OUTCOME.endsAt, true);
  }
  reserveMet(r: number): boolean {
    return (this.view.getUint8(this.at(r) + OUTCOME.flags) & FLAG_RESERVE_MET) !== 0;
  }

  /** Bid record r as the event it stands for. */
  event(r: number): LogEvent {
    const at = this.at(r);
    const outcome = readOutcomeRecord(this.view, at, 'log');
    const command: PlaceBid = {
      type: 'bid',
      auctionId: outcome.auctionId,
      bidderId: this.view.getFloat64(at - OUTCOME_AT, true),
      bidId: outcome.bidId,
      maxBid: this.view.getFloat64(at - OUTCOME_AT + 8, true),
    };
    return { seq: outcome.seq, command, outcome };
  }

  /** Every event in batch order: bid records by number, the others as decoded. */
  visit(onBid: (record: number) => void, onOther: (event: LogEvent) => void): void {
    let o = 0;
    for (let r = 0; r < this.bids; r++) {
      const index = this.index(r);
      while (o < this.others.length && this.others[o][0] < index) onOther(this.others[o++][1]);
      onBid(r);
    }
    while (o < this.others.length) onOther(this.others[o++][1]);
  }
}

export function decodeLogBatch(bytes: Uint8Array): LogBatch {
  const view = new LogBatchView(bytes);
  const events = new Array<LogEvent>(view.count);
  for (let r = 0; r < view.bids; r++) events[view.index(r)] = view.event(r);
  for (const [index, event] of view.others) events[index] = event;
  const batch: LogBatch = { v: 1, shard: view.shard, writer: view.writer, t: view.t, events };
  if (view.leader) batch.leader = view.leader;
  return batch;
}
