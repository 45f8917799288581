import { createHash } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import {
  shardOfAuction,
  type BidOutcome,
  type CreateOutcome,
  type LifecycleOutcome,
  type LogBatch,
  type LogEvent,
  type NotificationBody,
  type NotificationKind,
} from '../protocol/index.js';

/**
 * The read model of one shard in SQLite: what the audit consumer writes and
 * what `audit verify` rebuilds from the stream to compare against the file.
 * Both run this same code, so any difference is a difference in the data.
 */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS position (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  stream_seq INTEGER NOT NULL,   -- last stream message applied
  event_seq INTEGER NOT NULL,    -- last event applied
  event_count INTEGER NOT NULL,
  running_hash TEXT NOT NULL     -- sha256 chain over every stream message's bytes, in order
);
INSERT OR IGNORE INTO position (id, stream_seq, event_seq, event_count, running_hash) VALUES (1, 0, 0, 0, '');

CREATE TABLE IF NOT EXISTS auctions (
  id INTEGER PRIMARY KEY,
  seller_id INTEGER NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  image_url TEXT NOT NULL DEFAULT '',
  starting_price INTEGER NOT NULL,
  reserve_price INTEGER NOT NULL,
  starts_at INTEGER NOT NULL,
  ends_at INTEGER NOT NULL,
  soft_close_seconds INTEGER NOT NULL,
  status TEXT NOT NULL,
  price INTEGER NOT NULL,
  leader_id INTEGER NOT NULL DEFAULT 0,
  bid_count INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL,
  reserve_met INTEGER NOT NULL DEFAULT 0,
  winner_id INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  created_seq INTEGER NOT NULL,
  ended_at INTEGER,
  end_reason TEXT
);

-- Every bid, accepted or rejected: the record for disputes.
CREATE TABLE IF NOT EXISTS bids (
  seq INTEGER PRIMARY KEY,
  auction_id INTEGER NOT NULL,
  bidder_id INTEGER NOT NULL,
  bid_id INTEGER NOT NULL,
  max_bid REAL NOT NULL,          -- as sent (a rejected amount may not be an integer)
  status TEXT NOT NULL,
  reason TEXT,
  price_after INTEGER NOT NULL,
  leader_after INTEGER NOT NULL,
  leading INTEGER NOT NULL,
  outbid_user_id INTEGER NOT NULL,
  ends_at_after INTEGER NOT NULL,
  duplicate INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bids_auction ON bids (auction_id, seq);

-- Everything else: creations (accepted or not), opens, closes, cancels, fences.
CREATE TABLE IF NOT EXISTS lifecycle (
  seq INTEGER PRIMARY KEY,        -- event seq; fences have none and use -stream_seq
  stream_seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  auction_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  winner_id INTEGER NOT NULL,
  price INTEGER NOT NULL,
  detail TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lifecycle_auction ON lifecycle (auction_id, seq);

-- Notifications decided in the same transaction as their events, waiting to be
-- published to the NOTIFICATIONS stream (then deleted): nothing is lost between
-- the commit and the publish, whatever crashes.
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL,
  body TEXT NOT NULL               -- NotificationBody as JSON
);
`;

/**
 * What only searches use: the sorts' indexes and the full-text index. The
 * read model has them; `audit verify`'s projection of the stream does not
 * (it compares tables, and at 1.25M auctions a shard they were most of its
 * time).
 */
export const SEARCH_SCHEMA = `
CREATE INDEX IF NOT EXISTS auctions_status_ends ON auctions (status, ends_at, id);
CREATE INDEX IF NOT EXISTS auctions_ends ON auctions (ends_at, id);
-- The newest first (sort=newest). Files before it had an index on created_seq that no query used.
DROP INDEX IF EXISTS auctions_created;
CREATE INDEX IF NOT EXISTS auctions_created_at ON auctions (created_at, id);
CREATE INDEX IF NOT EXISTS auctions_price ON auctions (price, id);
CREATE INDEX IF NOT EXISTS auctions_seller ON auctions (seller_id, id);
CREATE VIRTUAL TABLE IF NOT EXISTS auctions_fts USING fts5 (title, description, content = 'auctions', content_rowid = 'id');
`;

/** Tables compared by `audit verify`, each with its key. */
export const VERIFIED_TABLES: ReadonlyArray<readonly [table: string, key: string]> = [
  ['position', 'id'],
  ['auctions', 'id'],
  ['bids', 'seq'],
  ['lifecycle', 'seq'],
];

/** A stream message arrived out of order (e.g. a redelivery after a restart): realign from the stored position. */
export class GapError extends Error {
  override name = 'GapError';
}

export class Projection {
  private readonly statements: Record<string, Statement>;
  /** Accepted bids' effect on each auction, written once per auction at `flush` (the last state wins). */
  private readonly pendingAuctionUpdates = new Map<number, unknown[]>();
  private readonly insertFts: Statement | null;

  constructor(
    private readonly db: Database,
    /** false for `audit verify`: no sort or full-text index (SEARCH_SCHEMA). */
    searchable = true,
  ) {
    db.exec(SCHEMA);
    if (searchable) db.exec(SEARCH_SCHEMA);
    this.insertFts = searchable
      ? db.prepare('INSERT INTO auctions_fts (rowid, title, description) VALUES (?, ?, ?)')
      : null;
    this.statements = {
      position: db.prepare(
        'SELECT stream_seq AS streamSeq, event_seq AS eventSeq, event_count AS eventCount, running_hash AS runningHash FROM position WHERE id = 1',
      ),
      savePosition: db.prepare(
        'UPDATE position SET stream_seq = ?, event_seq = ?, event_count = ?, running_hash = ? WHERE id = 1',
      ),
      insertAuction:
        db.prepare(`INSERT INTO auctions (id, seller_id, title, description, image_url, starting_price, reserve_price, starts_at, ends_at,
        soft_close_seconds, status, price, version, created_at, created_seq) VALUES (@id, @sellerId, @title, @description, @imageUrl, @startingPrice,
        @reservePrice, @startsAt, @endsAt, @softCloseSeconds, @status, @startingPrice, @version, @at, @seq)`),
      insertBid:
        db.prepare(`INSERT INTO bids (seq, auction_id, bidder_id, bid_id, max_bid, status, reason, price_after, leader_after, leading,
        outbid_user_id, ends_at_after, duplicate, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      bidAccepted: db.prepare(
        'UPDATE auctions SET price = ?, leader_id = ?, bid_count = ?, version = ?, ends_at = ?, reserve_met = ? WHERE id = ?',
      ),
      opened: db.prepare(`UPDATE auctions SET status = 'open', version = ? WHERE id = ?`),
      ended: db.prepare(
        'UPDATE auctions SET status = ?, version = ?, winner_id = ?, price = ?, reserve_met = ?, ended_at = ?, end_reason = ?, ends_at = MIN(ends_at, ?) WHERE id = ?',
      ),
      insertOutbox: db.prepare('INSERT INTO outbox (user_id, body) VALUES (?, ?)'),
      sellerOf: db.prepare('SELECT seller_id FROM auctions WHERE id = ?').pluck(),
      biddersOf: db.prepare(`SELECT DISTINCT bidder_id FROM bids WHERE auction_id = ? AND status = 'accepted'`).pluck(),
      insertLifecycle:
        db.prepare(`INSERT INTO lifecycle (seq, stream_seq, type, auction_id, status, reason, winner_id, price, detail, at)
        VALUES (@seq, @streamSeq, @type, @auctionId, @status, @reason, @winnerId, @price, @detail, @at)`),
    };
  }

  position(): { streamSeq: number; eventSeq: number; eventCount: number; runningHash: string } {
    return this.statements.position.get() as ReturnType<Projection['position']>;
  }

  /**
   * Applies one stream message. The caller wraps a fetched run of messages in
   * one transaction and calls `flush` before it commits; a message at or
   * below the stored position is skipped, so a redelivery changes nothing.
   */
  applyBatch(streamSeq: number, batch: LogBatch, raw: Uint8Array): boolean {
    const position = this.position();
    if (streamSeq <= position.streamSeq) return false;
    if (streamSeq !== position.streamSeq + 1)
      throw new GapError(`stream message ${streamSeq} follows ${position.streamSeq}`);
    let { eventSeq, eventCount } = position;
    if (batch.leader) {
      this.statements.insertLifecycle.run({
        seq: -streamSeq,
        streamSeq,
        type: 'leader',
        auctionId: 0,
        status: 'accepted',
        reason: null,
        winnerId: 0,
        price: 0,
        detail: batch.leader.engineId,
        at: batch.t,
      });
    }
    for (const event of batch.events) {
      if (event.seq !== eventSeq + 1)
        throw new GapError(`stream message ${streamSeq}: event ${event.seq} follows ${eventSeq}`);
      this.applyEvent(streamSeq, event, batch.t);
      eventSeq = event.seq;
      eventCount++;
    }
    this.statements.savePosition.run(streamSeq, eventSeq, eventCount, chainHash(position.runningHash, raw));
    return true;
  }

  /**
   * Writes the coalesced auction updates. Call it before the transaction
   * around a run of `applyBatch` calls commits: the transaction, not the
   * message, is the unit that lands whole.
   */
  flush(): void {
    for (const values of this.pendingAuctionUpdates.values()) this.statements.bidAccepted.run(...values);
    this.pendingAuctionUpdates.clear();
  }

  private flushAuction(auctionId: number): void {
    const values = this.pendingAuctionUpdates.get(auctionId);
    if (!values) return;
    this.statements.bidAccepted.run(...values);
    this.pendingAuctionUpdates.delete(auctionId);
  }

  /**
   * The end of an auction: `won` to the winner, `lost` to every other bidder
   * with an accepted bid (`auction_ended` to all of them when cancelled), and
   * `auction_ended` to the seller.
   */
  private notifyEnd(status: 'closed' | 'cancelled', o: LifecycleOutcome, seq: number, at: number): void {
    const base = {
      auctionId: o.auctionId,
      price: o.price,
      status,
      seq,
      at,
      ...(o.winnerId ? { winnerId: o.winnerId } : {}),
    };
    for (const bidder of this.statements.biddersOf.all(o.auctionId) as number[]) {
      this.notify(bidder, status === 'cancelled' ? 'auction_ended' : bidder === o.winnerId ? 'won' : 'lost', base);
    }
    const seller = this.statements.sellerOf.get(o.auctionId) as number | undefined;
    if (seller) this.notify(seller, 'auction_ended', base);
  }

  private notify(userId: number, kind: NotificationKind, fields: Omit<NotificationBody, 'kind' | 'key'>): void {
    const body: NotificationBody = {
      kind,
      ...fields,
      key: `${shardOfAuction(fields.auctionId)}:${fields.seq}:${kind}:${userId}`,
    };
    this.statements.insertOutbox.run(userId, JSON.stringify(body));
  }

  private applyEvent(streamSeq: number, event: LogEvent, at: number): void {
    const { command, outcome, seq } = event;
    const s = this.statements;
    switch (command.type) {
      case 'bid': {
        const o = outcome as BidOutcome;
        // Positional parameters: this runs for every bid.
        s.insertBid.run(
          seq,
          command.auctionId,
          command.bidderId,
          command.bidId,
          finiteOr(command.maxBid, -1),
          o.status,
          o.reason ?? null,
          o.price,
          o.leaderId,
          o.leading ? 1 : 0,
          o.outbidUserId,
          o.endsAt,
          o.duplicate ? 1 : 0,
          at,
        );
        if (o.status === 'accepted' && !o.duplicate) {
          this.pendingAuctionUpdates.set(command.auctionId, [
            o.price,
            o.leaderId,
            o.bidCount,
            o.version,
            o.endsAt,
            o.reserveMet ? 1 : 0,
            command.auctionId,
          ]);
          if (o.outbidUserId)
            this.notify(o.outbidUserId, 'outbid', { auctionId: command.auctionId, price: o.price, seq, at });
        }
        return;
      }
      case 'create': {
        const o = outcome as CreateOutcome;
        const text = event.text ?? {};
        if (o.status === 'accepted') {
          const scheduled = o.auctionStatus === 'scheduled';
          s.insertAuction.run({
            id: o.auctionId,
            sellerId: command.sellerId,
            title: text.title ?? '',
            description: text.description ?? '',
            imageUrl: text.imageUrl ?? '',
            startingPrice: command.startingPrice,
            reservePrice: command.reservePrice,
            startsAt: scheduled ? command.startsAt : at,
            endsAt: command.endsAt,
            softCloseSeconds: command.softCloseSeconds,
            status: o.auctionStatus,
            version: scheduled ? 1 : 2,
            at,
            seq,
          });
          if (this.insertFts) this.insertFts.run(o.auctionId, text.title ?? '', text.description ?? '');
        }
        s.insertLifecycle.run({
          seq,
          streamSeq,
          type: 'create',
          auctionId: o.auctionId,
          status: o.status,
          reason: o.reason ?? null,
          winnerId: 0,
          price: command.startingPrice,
          detail: text.title ?? null,
          at,
        });
        return;
      }
      case 'open':
      case 'close':
      case 'cancel': {
        this.flushAuction(command.auctionId);
        const o = outcome as LifecycleOutcome;
        if (o.status === 'accepted') {
          if (command.type === 'open') s.opened.run(o.version, command.auctionId);
          else {
            const endReason = command.type === 'cancel' ? 'cancelled' : o.winnerId ? 'sold' : 'no_winner';
            s.ended.run(
              o.auctionStatus,
              o.version,
              o.winnerId,
              o.price,
              o.reserveMet ? 1 : 0,
              at,
              endReason,
              at,
              command.auctionId,
            );
            this.notifyEnd(command.type === 'cancel' ? 'cancelled' : 'closed', o, seq, at);
          }
        }
        s.insertLifecycle.run({
          seq,
          streamSeq,
          type: command.type === 'close' && command.force ? 'operator_close' : command.type,
          auctionId: command.auctionId,
          status: o.status,
          reason: o.reason ?? null,
          winnerId: o.winnerId,
          price: o.price,
          detail: event.text?.reason ?? null,
          at,
        });
        return;
      }
    }
  }
}

/** The running hash: sha256(previous hex || the stream message's bytes), over every message in order. */
export function chainHash(previous: string, raw: Uint8Array): string {
  return createHash('sha256').update(previous).update(raw).digest('hex');
}

function finiteOr(value: number, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}
