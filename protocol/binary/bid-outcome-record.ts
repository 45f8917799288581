import { bidOutcome, type BidOutcome } from '../commands.js';
import { isU32, reasonByte, reasonOfByte, type BatchKind } from './header.js';

/**
 * The 64-byte record of a bid outcome (docs/wire-format.md), the same in a
 * results batch and, behind the bidder and the maximum, in a log batch's
 * bid event record: one writer, one reader, one set of offsets.
 */
export const BID_OUTCOME_RECORD_BYTES = 64;

/** Field offsets within the record. */
export const OUTCOME = {
  seq: 0,
  auctionId: 8,
  bidId: 16,
  endsAt: 24,
  price: 32,
  leaderId: 36,
  outbidUserId: 40,
  bidCount: 44,
  version: 48,
  index: 52,
  status: 56,
  reason: 57,
  flags: 58,
} as const;

const STATUS_REJECTED = 1;
export const FLAG_LEADING = 1;
export const FLAG_RESERVE_MET = 2;
const FLAG_DUPLICATE = 4;

/** Whether the record holds the outcome exactly (u32 fields, a known reason, a seq). */
export function fitsOutcomeRecord(o: BidOutcome): boolean {
  return (
    typeof o.seq === 'number' &&
    (o.status === 'accepted' || o.status === 'rejected') &&
    reasonByte(o.reason) >= 0 &&
    isU32(o.price) &&
    isU32(o.leaderId) &&
    isU32(o.outbidUserId) &&
    isU32(o.bidCount) &&
    isU32(o.version)
  );
}

export function writeOutcomeRecord(view: DataView, at: number, o: BidOutcome, index: number): void {
  view.setFloat64(at + OUTCOME.seq, o.seq, true);
  view.setFloat64(at + OUTCOME.auctionId, o.auctionId, true);
  view.setFloat64(at + OUTCOME.bidId, o.bidId, true);
  view.setFloat64(at + OUTCOME.endsAt, o.endsAt, true);
  view.setUint32(at + OUTCOME.price, o.price, true);
  view.setUint32(at + OUTCOME.leaderId, o.leaderId, true);
  view.setUint32(at + OUTCOME.outbidUserId, o.outbidUserId, true);
  view.setUint32(at + OUTCOME.bidCount, o.bidCount, true);
  view.setUint32(at + OUTCOME.version, o.version, true);
  view.setUint32(at + OUTCOME.index, index, true);
  view.setUint8(at + OUTCOME.status, o.status === 'rejected' ? STATUS_REJECTED : 0);
  view.setUint8(at + OUTCOME.reason, reasonByte(o.reason));
  view.setUint8(
    at + OUTCOME.flags,
    (o.leading ? FLAG_LEADING : 0) | (o.reserveMet ? FLAG_RESERVE_MET : 0) | (o.duplicate ? FLAG_DUPLICATE : 0),
  );
}

export function readOutcomeRecord(view: DataView, at: number, kind: BatchKind): BidOutcome {
  const flags = view.getUint8(at + OUTCOME.flags);
  return bidOutcome(
    view.getUint8(at + OUTCOME.status) === STATUS_REJECTED ? 'rejected' : 'accepted',
    reasonOfByte(view.getUint8(at + OUTCOME.reason), kind),
    view.getFloat64(at + OUTCOME.auctionId, true),
    view.getFloat64(at + OUTCOME.bidId, true),
    view.getUint32(at + OUTCOME.price, true),
    (flags & FLAG_LEADING) !== 0,
    view.getUint32(at + OUTCOME.leaderId, true),
    view.getUint32(at + OUTCOME.outbidUserId, true),
    view.getFloat64(at + OUTCOME.endsAt, true),
    view.getUint32(at + OUTCOME.bidCount, true),
    view.getUint32(at + OUTCOME.version, true),
    (flags & FLAG_RESERVE_MET) !== 0,
    (flags & FLAG_DUPLICATE) !== 0,
    view.getFloat64(at + OUTCOME.seq, true),
  );
}

export function isAccepted(view: DataView, at: number): boolean {
  return view.getUint8(at + OUTCOME.status) !== STATUS_REJECTED;
}
