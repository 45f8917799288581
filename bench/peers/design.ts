/**
 * A peer: one classic way to decide bids, put behind the same front door as
 * the engine (bench/peers/front-door.ts) so that `make bench` compares like
 * with like: the same WebSocket frames, the same tokens, the same load
 * generator, the same rates. Only what happens between "a bid arrived" and
 * "its outcome is durable" differs.
 */

/** One bid as the front door hands it over: already checked for shape and range. */
export type PeerBid = {
  auctionId: number;
  bidderId: number;
  /** The client's id for the bid: a retry of the same (bidder, bidId) gets the first outcome back. */
  bidId: number;
  maxBid: number;
  /** Wall time the front door received it (ms): the rules' clock, as the engine's commands carry theirs. */
  at: number;
};

export type PeerOutcome = {
  status: 'accepted' | 'rejected';
  reason?: 'auction_not_found' | 'auction_closed' | 'bid_too_low';
  price: number;
  leading: boolean;
  endsAt: number;
  /** Where the bid sits in its design's durable history (row id, stream sequence, bid count). */
  seq: number;
};

export interface PeerDesign {
  /** For reports: what each bid costs in this design. */
  readonly description: string;
  /** Resolves once the bid's outcome is as durable as the design makes it. */
  decide(bid: PeerBid): Promise<PeerOutcome>;
  close(): Promise<void>;
}

/** The peers `make bench` puts behind the front door, by the name the report gives them. */
export const PEER_DESIGNS = ['postgres-row-lock', 'redis-always', 'redis-everysec', 'jetstream-first'] as const;
export type PeerDesignName = (typeof PEER_DESIGNS)[number];

/** Every auction a peer is set up with: ids 1..count, open for six hours from set-up, starting price 100. */
export type PeerAuctions = { count: number; startingPrice: number; endsAt: number; softCloseMs: number };
