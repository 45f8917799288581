import type { Status } from './commands.js';
import type { Reason } from './reasons.js';
import type { NotificationBody } from './notifications.js';

/**
 * The shapes clients see (../shared/API.md, docs/openapi.yaml): the read
 * model answers `Auction` and `BidRecord` pages, the gateway builds the rest
 * from engine outcomes and log events (gateway/public-shapes.ts).
 */

export type AuctionStatus = Status;

/** API.md Auction. The reserve itself is never shown, only whether there is one and whether it is met. */
export type Auction = {
  id: number;
  sellerId: number;
  title: string;
  description: string;
  imageUrl: string;
  startingPrice: number;
  startsAt: number;
  endsAt: number;
  softCloseSeconds: number;
  status: AuctionStatus;
  price: number;
  leaderId: number | null;
  bidCount: number;
  version: number;
  hasReserve: boolean;
  reserveMet: boolean;
  createdAt: number;
  winnerId?: number;
};

/**
 * The answer to `POST /v1/auctions`, made before the read model has the
 * auction: no `createdAt`, and `startsAt` null for one that opens at once.
 */
export type CreatedAuction = Omit<Auction, 'startsAt' | 'createdAt'> & { startsAt: number | null };

/**
 * `GET /v1/auctions/:id` just after creation, while the read model does not
 * have the auction yet: the engine's state, with empty text and no starting price.
 */
export type PendingAuction = Omit<Auction, 'startingPrice' | 'startsAt' | 'createdAt'> & {
  startingPrice: null;
  startsAt: number | null;
  pending: true;
};

/** API.md `auction.state` without its `type`: what changes while an auction runs. */
export type LiveState = {
  auctionId: number;
  price: number;
  leaderId: number;
  bidCount: number;
  endsAt: number;
  status: AuctionStatus;
  version: number;
  reserveMet: boolean;
  winnerId?: number;
};

/** API.md BidResult. A rejection the gateway decided without the engine (nothing recorded) has `seq` 0 and no version. */
export type BidResult = {
  bidId: number;
  auctionId: number;
  status: 'accepted' | 'rejected';
  reason?: Reason;
  price: number;
  leading: boolean;
  endsAt: number;
  seq: number;
  /** The auction's version and bid count after the engine decided the bid. */
  version?: number;
  bidCount?: number;
  /** A retried bidId: this is the original result. */
  duplicate?: true;
  /** With reason `overloaded`: the bid was shed, nothing recorded; send the same bidId again after this long. */
  retryAfterMs?: number;
};

/** API.md BidRecord: `maxBid` and `bidId` only for the viewer's own bids. */
export type BidRecord = {
  seq: number;
  bidderId: number;
  price: number;
  status: string;
  reason?: string;
  at: number;
  leading: boolean;
  maxBid?: number;
  bidId?: number;
};

/** A page of the search or of a bid history; `next` continues it (null: the last page). */
export type AuctionPage = { auctions: Auction[]; next: string | null };
export type BidPage = { bids: BidRecord[]; next: number | null };

/** API.md Notification: its id is its NOTIFICATIONS stream sequence, `eventSeq` the shard event that caused it. */
export type Notification = Omit<NotificationBody, 'seq'> & { id: number; eventSeq: number };
