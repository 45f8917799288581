import type { Reason } from './reasons.js';

/**
 * Commands of the engine core. Time and sequence are not part of a command:
 * the engine stamps them when it decides the command, and the log stores both.
 * Text (title, description...) never reaches the core; the engine service
 * carries it beside the command into the creation event.
 */
export type CreateAuction = {
  type: 'create';
  sellerId: number;
  startingPrice: number;
  /** 0 when the auction has no reserve. */
  reservePrice: number;
  /** At or before the command's time: the auction opens at once. */
  startsAt: number;
  endsAt: number;
  softCloseSeconds: number;
};

export type PlaceBid = {
  type: 'bid';
  auctionId: number;
  bidderId: number;
  bidId: number;
  maxBid: number;
};

/** Issued by the engine's own timer at startsAt. */
export type OpenAuction = { type: 'open'; auctionId: number };

/** Issued by the engine's timer at endsAt, or by an operator with force. */
export type CloseAuction = { type: 'close'; auctionId: number; force: boolean };

/** Operator action: ends the auction with no winner. */
export type CancelAuction = { type: 'cancel'; auctionId: number };

export type Command = CreateAuction | PlaceBid | OpenAuction | CloseAuction | CancelAuction;
export type CommandType = Command['type'];

export type Status = 'scheduled' | 'open' | 'closed' | 'cancelled';

export type CreateOutcome = {
  type: 'create';
  status: 'accepted' | 'rejected';
  reason?: Reason;
  /** 0 when rejected. */
  auctionId: number;
  auctionStatus?: Status;
};

export type BidOutcome = {
  type: 'bid';
  status: 'accepted' | 'rejected';
  reason?: Reason;
  auctionId: number;
  bidId: number;
  /** Visible price after this bid (the current price when rejected; 0 if no auction). */
  price: number;
  /** Whether this bidder leads after this bid. */
  leading: boolean;
  /** The leader after this bid (0: none). */
  leaderId: number;
  /** The leader before this bid, when this bid changed the leader (0 otherwise). */
  outbidUserId: number;
  endsAt: number;
  bidCount: number;
  version: number;
  reserveMet: boolean;
  /** True when this answer repeats an earlier accepted bid with the same (bidder, bidId). */
  duplicate: boolean;
  /** Sequence number of the event that recorded the bid (the original one for a duplicate). */
  seq: number;
};

export type LifecycleOutcome = {
  type: 'open' | 'close' | 'cancel';
  status: 'accepted' | 'rejected';
  reason?: Reason;
  auctionId: number;
  auctionStatus?: Status;
  /** For close: the winner (0: none, e.g. no bids or reserve not met). */
  winnerId: number;
  price: number;
  reserveMet: boolean;
  version: number;
};

export type Outcome = CreateOutcome | BidOutcome | LifecycleOutcome;

/** Public state of one auction as the engine knows it (no maxima, no reserve). */
export type AuctionState = {
  auctionId: number;
  sellerId: number;
  status: Status;
  price: number;
  leaderId: number;
  bidCount: number;
  startsAt: number;
  endsAt: number;
  softCloseSeconds: number;
  version: number;
  hasReserve: boolean;
  reserveMet: boolean;
  /** Set once closed with a winner. */
  winnerId: number;
};

/**
 * A bid outcome as one of two literal shapes (with and without `reason`),
 * never built with `delete`, which turns an object into a slow dictionary
 * (msgpackr then took twice as long to write it). The core's answers and
 * the binary batches' readers both build them here, so every copy of a bid
 * outcome has the same hidden class and key order.
 */
export function bidOutcome(
  status: BidOutcome['status'],
  reason: Reason | undefined,
  auctionId: number,
  bidId: number,
  price: number,
  leading: boolean,
  leaderId: number,
  outbidUserId: number,
  endsAt: number,
  bidCount: number,
  version: number,
  reserveMet: boolean,
  duplicate: boolean,
  seq: number,
): BidOutcome {
  if (reason === undefined) {
    return {
      type: 'bid',
      status,
      auctionId,
      bidId,
      price,
      leading,
      leaderId,
      outbidUserId,
      endsAt,
      bidCount,
      version,
      reserveMet,
      duplicate,
      seq,
    };
  }
  return {
    type: 'bid',
    status,
    reason,
    auctionId,
    bidId,
    price,
    leading,
    leaderId,
    outbidUserId,
    endsAt,
    bidCount,
    version,
    reserveMet,
    duplicate,
    seq,
  };
}
