import type {
  AuctionState,
  BidOutcome,
  CreateAuction,
  CreateOutcome,
  LifecycleOutcome,
  NotificationBody,
  Reason,
  Status,
} from '../protocol/index.js';
import type {
  Auction,
  BidResult,
  CreatedAuction,
  LiveState,
  Notification,
  PendingAuction,
} from '../protocol/public.js';

/**
 * Every public shape the gateway builds (protocol/public.ts) and every frame
 * it sends a client, each in one place: from engine outcomes, engine states,
 * log events and read-model rows. Key order is part of the wire (JSON text):
 * a builder changes it for every transport at once or not at all.
 */

// --- live state ----------------------------------------------------------------------------------

/** What one accepted event changes in an auction's live state. */
export type LivePatch = Partial<LiveState> & { version: number };

export function liveFromEngine(s: AuctionState): LiveState {
  const state: LiveState = {
    auctionId: s.auctionId,
    price: s.price,
    leaderId: s.leaderId,
    bidCount: s.bidCount,
    endsAt: s.endsAt,
    status: s.status,
    version: s.version,
    reserveMet: s.reserveMet,
  };
  if (s.winnerId) state.winnerId = s.winnerId;
  return state;
}

/** The live state of an auction the engine no longer holds, from the read model's Auction. */
export function liveFromAuction(auctionId: number, a: Auction): LiveState {
  const state: LiveState = {
    auctionId,
    price: a.price,
    leaderId: a.leaderId ?? 0,
    bidCount: a.bidCount,
    endsAt: a.endsAt,
    status: a.status,
    version: a.version,
    reserveMet: a.reserveMet,
  };
  if (a.winnerId) state.winnerId = a.winnerId;
  return state;
}

/** What an accepted event of the log changes in an auction's live state (null: nothing public). */
/** What an accepted bid changes (from its outcome, or from a log batch's bid record). */
export function livePatchOfBid(
  price: number,
  leaderId: number,
  bidCount: number,
  endsAt: number,
  version: number,
  reserveMet: boolean,
): LivePatch {
  return { price, leaderId, bidCount, endsAt, version, reserveMet, status: 'open' };
}

export function livePatch(type: string, outcome: BidOutcome | LifecycleOutcome): LivePatch | null {
  if (type === 'bid') {
    const o = outcome as BidOutcome;
    if (o.duplicate) return null;
    return livePatchOfBid(o.price, o.leaderId, o.bidCount, o.endsAt, o.version, o.reserveMet);
  }
  const o = outcome as LifecycleOutcome;
  if (type === 'open') return { status: 'open', version: o.version };
  if (type === 'close' || type === 'cancel') {
    // endsAt stays as the engine keeps it (a forced close does not rewrite it).
    const patch: LivePatch = {
      status: o.auctionStatus ?? (type === 'cancel' ? 'cancelled' : 'closed'),
      price: o.price,
      reserveMet: o.reserveMet,
      version: o.version,
    };
    if (o.winnerId) patch.winnerId = o.winnerId;
    return patch;
  }
  return null;
}

// --- auctions ------------------------------------------------------------------------------------

/** A create command with the text the engine service carries beside it. */
export type CreateRequest = CreateAuction & { title: string; description: string; imageUrl: string };

/** The answer to a create the engine accepted; `state` is its state just after (null: the engine did not say). */
export function createdAuction(
  command: CreateRequest,
  outcome: CreateOutcome,
  state: AuctionState | null,
): CreatedAuction {
  return {
    id: outcome.auctionId,
    sellerId: command.sellerId,
    title: command.title,
    description: command.description,
    imageUrl: command.imageUrl,
    startingPrice: command.startingPrice,
    startsAt: state?.startsAt || command.startsAt || null,
    endsAt: state?.endsAt ?? command.endsAt,
    softCloseSeconds: command.softCloseSeconds,
    // An accepted create always carries the status the auction was created in.
    status: state?.status ?? (outcome.auctionStatus as Status),
    price: state?.price ?? command.startingPrice,
    leaderId: null,
    bidCount: 0,
    version: state?.version ?? 1,
    hasReserve: command.reservePrice > 0,
    reserveMet: false,
  };
}

/** An auction the read model does not have yet, from the engine's state. */
export function pendingAuction(auctionId: number, state: AuctionState): PendingAuction {
  return {
    id: auctionId,
    sellerId: state.sellerId,
    title: '',
    description: '',
    imageUrl: '',
    startingPrice: null,
    startsAt: state.startsAt || null,
    endsAt: state.endsAt,
    softCloseSeconds: state.softCloseSeconds,
    status: state.status,
    price: state.price,
    leaderId: state.leaderId || null,
    bidCount: state.bidCount,
    version: state.version,
    hasReserve: state.hasReserve,
    reserveMet: state.reserveMet,
    pending: true,
  };
}

/** The auction with its live fields replaced by `live` when that is newer (in place). */
export function withLiveState<A extends Auction | PendingAuction>(auction: A, live: LiveState | null): A {
  if (live && live.version > auction.version) {
    auction.price = live.price;
    auction.leaderId = live.leaderId || null;
    auction.bidCount = live.bidCount;
    auction.endsAt = live.endsAt;
    auction.status = live.status;
    auction.version = live.version;
    auction.reserveMet = live.reserveMet;
    if (live.winnerId) auction.winnerId = live.winnerId;
  }
  return auction;
}

// --- bids and notifications ------------------------------------------------------------------------

export function bidResultOf(o: BidOutcome): BidResult {
  const result: BidResult = {
    bidId: o.bidId,
    auctionId: o.auctionId,
    status: o.status,
    price: o.price,
    leading: o.leading,
    endsAt: o.endsAt,
    seq: o.seq,
    version: o.version,
    bidCount: o.bidCount,
  };
  if (o.reason) result.reason = o.reason;
  if (o.duplicate) result.duplicate = true;
  return result;
}

/** A rejection decided without the engine (nothing was logged: seq 0). */
export function unrecordedBidResult(auctionId: number, bidId: number, reason: Reason): BidResult {
  return { bidId, auctionId, status: 'rejected', reason, price: 0, leading: false, endsAt: 0, seq: 0 };
}

/** A bid shed before it was decided (API.md "Load shedding"): the same bidId may come again after `retryAfterMs`. */
export function overloadedBidResult(auctionId: number, bidId: number, retryAfterMs: number): BidResult {
  return { ...unrecordedBidResult(auctionId, bidId, 'overloaded'), retryAfterMs };
}

/** A notification as clients see it: its id is its stream sequence, `eventSeq` the event that caused it. */
export function notificationOf(id: number, { seq, ...body }: NotificationBody): Notification {
  return { id, ...body, eventSeq: seq };
}

// --- server -> client frames (WebSocket; SSE carries the state frame) ---------------------------------

/** A client's request id, echoed in the answer. */
export type Rid = string | number | undefined;

export type StateFrame = { type: 'auction.state' } & LiveState;

export function stateFrame(state: LiveState): StateFrame {
  return { type: 'auction.state', ...state };
}

export function bidResultFrame(rid: Rid, result: BidResult) {
  return { type: 'bid.result', ...(rid === undefined ? {} : { rid }), ...result };
}

export function notificationFrame(notification: Notification) {
  return { type: 'notification', ...notification };
}

export function errorFrame(rid: Rid, code: string, message: string, extra?: Record<string, unknown>) {
  return { type: 'error', ...(rid === undefined ? {} : { rid }), code, message, ...extra };
}

/** Answers an `auth`, `subscribe`, `unsubscribe` or `notifications.ack` that carried a rid, once done. */
export function okFrame(rid: string | number, extra?: Record<string, unknown>) {
  return { type: 'ok', rid, ...extra };
}

export function pongFrame(rid: Rid) {
  return { type: 'pong', ...(rid === undefined ? {} : { rid }) };
}
