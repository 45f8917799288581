import { shardOfAuction } from '../../protocol/index.js';
import { encodeCursor } from '../../protocol/cursors.js';
import type { SearchRequest } from '../../protocol/operations.js';
import type { Auction, AuctionPage, BidPage, PendingAuction } from '../../protocol/public.js';
import { ApiError } from '../errors.js';
import type { LiveFeed } from '../live/feed.js';
import { pendingAuction, withLiveState } from '../public-shapes.js';
import type { AuditClient } from './audit-client.js';
import type { EngineStates } from './engine-states.js';

/** The Auction field each search sort orders by, the same (value, id) order every shard's read model used. */
export const SORT_FIELDS = { ending_soon: 'endsAt', newest: 'createdAt', price: 'price' } as const;

export type AuctionReadsDeps = { live: LiveFeed; audit: AuditClient; engineStates: EngineStates };

/**
 * Reads of public auction data: the read model of the auction's shard (or
 * of every shard, for a search), with the live fields of an auction this
 * gateway watches overlaid, since they are fresher than the read model's.
 */
export class AuctionReads {
  constructor(private readonly d: AuctionReadsDeps) {}

  /**
   * An auction's details from the read model, with the live fields replaced
   * by this gateway's fresher state when it has one. Just after creation the
   * read model may not have the auction yet: the engine's state answers then.
   */
  async details(auctionId: number): Promise<Auction | PendingAuction | null> {
    const live = this.d.live;
    const shard = shardOfAuction(auctionId);
    if (live.knownMissing(auctionId) || !(await live.hasShard(shard))) return null;
    const startedAt = live.lookupStarted();
    const { auction } = await this.d.audit.query(shard, { op: 'auction', auctionId });
    if (auction) return withLiveState(auction, live.current(auctionId));
    // ApiError `unavailable` (503, retry is safe) when the engine does not answer: not a 404.
    const state = await this.d.engineStates.one(auctionId);
    if (!state) {
      live.noteMissing(auctionId, startedAt);
      return null;
    }
    return withLiveState(pendingAuction(auctionId, state), live.current(auctionId));
  }

  /** A page of an auction's bid history (`viewerId`'s own maxima included); ApiError `not_found` for no such auction. */
  async bids(
    auctionId: number,
    page: { after: number | undefined; limit: number | undefined; viewerId: number },
  ): Promise<BidPage> {
    const shard = shardOfAuction(auctionId);
    if (this.d.live.knownMissing(auctionId) || !(await this.d.live.hasShard(shard)))
      throw new ApiError('not_found', `no auction ${auctionId}`);
    // The read model lags the engine: an auction it does not have yet is not known to be missing.
    const exists = await this.d.audit.query(shard, { op: 'auction', auctionId });
    if (!exists.auction) throw new ApiError('not_found', `no auction ${auctionId}`);
    return this.d.audit.query(shard, {
      op: 'bids',
      auctionId,
      after: page.after,
      limit: page.limit,
      viewerId: page.viewerId,
    });
  }

  /** A search scattered over every shard's read model, merged by the same (sort value, id) order each shard used. */
  async search(request: SearchRequest & { limit: number }): Promise<AuctionPage> {
    const field = SORT_FIELDS[request.sort ?? 'ending_soon'];
    const pages = await Promise.all(this.d.live.knownShards().map((shard) => this.d.audit.query(shard, request)));
    const descending = request.sort === 'newest';
    const merged = pages
      .flatMap((p) => p.auctions)
      .sort((a, b) => {
        const byValue = a[field] - b[field] || a.id - b.id;
        return descending ? -byValue : byValue;
      });
    const page = merged.slice(0, request.limit);
    const last = page[page.length - 1];
    return { auctions: page, next: merged.length > request.limit && last ? encodeCursor(last[field], last.id) : null };
  }
}
