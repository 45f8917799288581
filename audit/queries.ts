import type { Database, Statement } from 'better-sqlite3';
import { decodeCursor, encodeCursor } from '../protocol/cursors.js';
import type { Auction, AuctionPage, AuctionStatus, BidPage, BidRecord } from '../protocol/public.js';
import type { AuctionEvent, SearchRequest } from '../protocol/operations.js';

/** Bounds of the query API. */
export const QUERY_LIMITS = { pageMax: 100, pageDefault: 20, queryCharsMax: 200, queryWordsMax: 10 };

/**
 * A query the client has to fix (a bad cursor, limit, status or sort): its
 * message is for the client. Any other error is the audit's own and its
 * text stays in the log.
 */
export class QueryError extends Error {
  override name = 'QueryError';
}

export type SearchSort = 'ending_soon' | 'newest' | 'price';
/**
 * Each sort's column and the index that orders by it (audit/projection.ts).
 * A Map, not an object: a sort named `constructor` or `__proto__` must find nothing.
 */
const SORTS = new Map<string, { column: string; direction: 'ASC' | 'DESC'; index: string }>([
  ['ending_soon', { column: 'ends_at', direction: 'ASC', index: 'auctions_ends' }],
  ['newest', { column: 'created_at', direction: 'DESC', index: 'auctions_created_at' }],
  ['price', { column: 'price', direction: 'ASC', index: 'auctions_price' }],
]);
/**
 * From this many full-text matches on, a search walks its sort's index and
 * keeps the rows that match, instead of fetching every match and sorting
 * them: at 1.25M auctions a shard, a common word matched 31k rows and the
 * fetch-and-sort took 24 ms, the walk 5 ms (docs/audit.md, "Search plans").
 * Below it, the matches are few and fetching them all is cheaper than a walk
 * that may pass most of the index before it fills a page.
 */
export const DENSE_MATCHES_MIN = 2_000;
/**
 * Matches a density probe reads at most: the density of the first this many
 * (by id, FTS5's order) over the shard's ids estimates the whole. Counting to
 * 2,000 cost a pair of common words 1.7 ms a shard, a fifth of its search
 * (make bench-scale's titles at 1.25M auctions a shard); 200 cost a tenth of
 * that. Ids follow listing order, so matches clustered in a burst of
 * listings are overestimated, which costs a walk of at most
 * 21 * auctions / 200 index entries, never a wrong answer.
 */
export const DENSITY_SAMPLE = 200;
const STATUSES = new Set(['scheduled', 'open', 'closed', 'cancelled']);

type AuctionRow = {
  id: number;
  seller_id: number;
  title: string;
  description: string;
  image_url: string;
  starting_price: number;
  reserve_price: number;
  starts_at: number;
  ends_at: number;
  soft_close_seconds: number;
  status: string;
  price: number;
  leader_id: number;
  bid_count: number;
  version: number;
  reserve_met: number;
  winner_id: number;
  created_at: number;
};

/** The public Auction (protocol/public.ts; the reserve itself is never shown). */
export function toAuction(row: AuctionRow): Auction {
  const auction: Auction = {
    id: row.id,
    sellerId: row.seller_id,
    title: row.title,
    description: row.description,
    imageUrl: row.image_url,
    startingPrice: row.starting_price,
    startsAt: row.starts_at,
    endsAt: row.ends_at,
    softCloseSeconds: row.soft_close_seconds,
    status: row.status as AuctionStatus,
    price: row.price,
    leaderId: row.leader_id || null,
    bidCount: row.bid_count,
    version: row.version,
    hasReserve: row.reserve_price > 0,
    reserveMet: row.reserve_met === 1,
    createdAt: row.created_at,
  };
  if (row.winner_id) auction.winnerId = row.winner_id;
  return auction;
}

function limitOf(value: unknown): number {
  if (value === undefined || value === null) return QUERY_LIMITS.pageDefault;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > QUERY_LIMITS.pageMax)
    throw new QueryError(`limit must be 1..${QUERY_LIMITS.pageMax}`);
  return n;
}

/** Words of a search query as an FTS5 expression: every word must match (prefix on the last one). */
export function ftsQuery(q: string): string | null {
  if (q.length > QUERY_LIMITS.queryCharsMax)
    throw new QueryError(`q is longer than ${QUERY_LIMITS.queryCharsMax} characters`);
  const words =
    q
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu)
      ?.slice(0, QUERY_LIMITS.queryWordsMax) ?? [];
  if (words.length === 0) return null;
  return words.map((w, i) => `"${w}"${i === words.length - 1 ? '*' : ''}`).join(' ');
}

export class AuditQueries {
  private readonly byId: Statement;
  private readonly bidsPage: Statement;
  private readonly sampleMatches: Statement;
  private readonly idRange: Statement;

  constructor(
    private readonly db: Database,
    private readonly denseMatchesMin = DENSE_MATCHES_MIN,
  ) {
    this.sampleMatches = db.prepare(
      'SELECT count(*) AS n, min(id) AS first, max(id) AS last FROM (SELECT rowid AS id FROM auctions_fts WHERE auctions_fts MATCH ? ORDER BY rowid LIMIT ?)',
    );
    // Two subqueries: SQLite reads a lone min() or max() off the primary key's ends; both in one SELECT scan the table.
    this.idRange = db.prepare('SELECT (SELECT min(id) FROM auctions) AS low, (SELECT max(id) FROM auctions) AS high');
    this.byId = db.prepare('SELECT * FROM auctions WHERE id = ?');
    this.bidsPage = db.prepare(
      'SELECT seq, bidder_id, bid_id, max_bid, status, reason, price_after, leading, at FROM bids WHERE auction_id = ? AND seq > ? ORDER BY seq LIMIT ?',
    );
  }

  auction(id: number) {
    const row = this.byId.get(id) as AuctionRow | undefined;
    return row ? toAuction(row) : null;
  }

  /** Bid history by sequence; a bidder's maximum is shown only to that bidder. */
  bids(auctionId: number, options: { after?: unknown; limit?: unknown; viewerId?: unknown }): BidPage {
    const after = options.after === undefined || options.after === null ? 0 : Number(options.after);
    if (!Number.isSafeInteger(after) || after < 0) throw new QueryError('after must be a sequence number');
    const limit = limitOf(options.limit);
    const viewer = Number(options.viewerId ?? 0);
    const rows = this.bidsPage.all(auctionId, after, limit + 1) as {
      seq: number;
      bidder_id: number;
      bid_id: number;
      max_bid: number;
      status: string;
      reason: string | null;
      price_after: number;
      leading: number;
      at: number;
    }[];
    const page = rows.slice(0, limit).map((r) => {
      const record: BidRecord = {
        seq: r.seq,
        bidderId: r.bidder_id,
        price: r.price_after,
        status: r.status,
        at: r.at,
        leading: r.leading === 1,
      };
      if (r.reason) record.reason = r.reason;
      if (viewer > 0 && r.bidder_id === viewer) {
        record.maxBid = r.max_bid;
        record.bidId = r.bid_id;
      }
      return record;
    });
    return { bids: page, next: rows.length > limit ? page[page.length - 1].seq : null };
  }

  /**
   * The newest events of one auction, newest first, for operators
   * (auctionctl auction show): bids with their maxima, and its lifecycle.
   */
  recentEvents(auctionId: number, limitValue: unknown) {
    const limit = limitOf(limitValue);
    const rows = this.db
      .prepare(
        `
      SELECT seq, 'bid' AS type, status, reason, price_after AS price, bidder_id AS bidderId, bid_id AS bidId, max_bid AS maxBid, leading, NULL AS winnerId, NULL AS detail, at
        FROM bids WHERE auction_id = ?
      UNION ALL
      SELECT seq, type, status, reason, price, NULL, NULL, NULL, NULL, winner_id, detail, at
        FROM lifecycle WHERE auction_id = ? AND seq > 0
      ORDER BY seq DESC LIMIT ?`,
      )
      .all(auctionId, auctionId, limit) as Record<string, unknown>[];
    return {
      // The columns of the query above, without the NULLs one kind of event lacks.
      events: rows.map(
        (row) =>
          Object.fromEntries(
            Object.entries(row)
              .filter(([, value]) => value !== null)
              .map(([k, value]) => [k, k === 'leading' ? value === 1 : value]),
          ) as AuctionEvent,
      ),
    };
  }

  /** Search with filters and keyset paging; results are ordered by (sort value, id). */
  search(options: SearchRequest): AuctionPage {
    const order = SORTS.get(options.sort ?? 'ending_soon');
    if (!order) throw new QueryError('sort must be ending_soon, newest or price');
    const limit = limitOf(options.limit);
    const where: string[] = [];
    const params: unknown[] = [];
    const match = options.q === undefined ? null : ftsQuery(options.q);
    if (match) {
      where.push('a.id IN (SELECT rowid FROM auctions_fts WHERE auctions_fts MATCH ?)');
      params.push(match);
    }
    if (options.status !== undefined) {
      if (!STATUSES.has(options.status)) throw new QueryError('status must be scheduled, open, closed or cancelled');
      where.push('a.status = ?');
      params.push(options.status);
    }
    if (options.sellerId !== undefined) {
      where.push('a.seller_id = ?');
      params.push(options.sellerId);
    }
    const cursor = decodeCursor(options.cursor);
    if (cursor === undefined) throw new QueryError('bad cursor');
    if (cursor) {
      // A row value, so that the walk of an index starts at the cursor rather than at the index's start.
      where.push(`(a.${order.column}, a.id) ${order.direction === 'ASC' ? '>' : '<'} (?, ?)`);
      params.push(cursor[0], cursor[1]);
    }
    const sql = `SELECT a.* FROM auctions a${this.walkIndex(order, match, options) ?? ''}
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY a.${order.column} ${order.direction}, a.id ${order.direction} LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, limit + 1) as AuctionRow[];
    const page = rows.slice(0, limit);
    const last = page[page.length - 1] as unknown as Record<string, number> | undefined;
    return {
      auctions: page.map(toAuction),
      next: rows.length > limit && last ? encodeCursor(last[order.column], last.id) : null,
    };
  }

  /**
   * ` INDEXED BY` the sort's index when a full-text search matches so many
   * rows that walking the index in order finds a page sooner than sorting
   * every match (SQLite's planner cannot tell: FTS5 does not estimate its
   * matches). A seller's own auctions are few, so their index stays the plan.
   */
  /**
   * About `denseMatchesMin` rows or more match the FTS5 expression: counted
   * when fewer than DENSITY_SAMPLE match, else estimated from how closely
   * the first DENSITY_SAMPLE matches sit among the shard's ids.
   */
  private dense(expression: string): boolean {
    const sample = Math.min(DENSITY_SAMPLE, this.denseMatchesMin);
    const { n, first, last } = this.sampleMatches.get(expression, sample) as { n: number; first: number; last: number };
    if (n < sample) return n >= this.denseMatchesMin;
    if (sample >= this.denseMatchesMin) return true;
    const { low, high } = this.idRange.get() as { low: number; high: number };
    return 1 + ((n - 1) * (high - low)) / Math.max(1, last - first) >= this.denseMatchesMin;
  }

  private walkIndex(order: { index: string }, match: string | null, options: SearchRequest): string | null {
    if (!match || options.sellerId !== undefined) return null;
    // The words taken whole match no more rows than with the last one a prefix, and FTS5 counts them as it reads
    // the doclists, where a prefix first merges those of every term it starts (a common word: 0.15 ms against
    // 0.85, measured at 1.25M auctions): many whole-word matches settle it, and only fewer need the real count.
    if (!this.dense(match.replace(/\*$/, '')) && !this.dense(match)) return null;
    return ` INDEXED BY ${order.index === 'auctions_ends' && options.status !== undefined ? 'auctions_status_ends' : order.index}`;
  }
}
