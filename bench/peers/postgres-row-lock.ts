import pg from 'pg';
import type { PeerAuctions, PeerBid, PeerDesign, PeerOutcome } from './design.js';
import { sqlIncrement } from './proxy-rule.js';

/**
 * The classic database design at its best: one round trip per bid to a
 * PL/pgSQL function that locks the auction's row (`SELECT ... FOR UPDATE`),
 * answers a retried (bidder, bid id) with its first outcome, applies the
 * proxy rule, inserts the bid (accepted or rejected: the history keeps
 * both) and updates the auction, in one transaction committed with
 * Postgres's own durability (`synchronous_commit` as configured: on by
 * default, an fsync'd WAL per commit, group-committed across connections).
 * A pool of connections, prepared statement.
 */
const SCHEMA = `
DROP TABLE IF EXISTS peer_bids; DROP TABLE IF EXISTS peer_auctions;
CREATE TABLE peer_auctions (id bigint PRIMARY KEY, price bigint NOT NULL, leader_id bigint NOT NULL DEFAULT 0,
  leader_max bigint NOT NULL DEFAULT 0, ends_at bigint NOT NULL, bid_count int NOT NULL DEFAULT 0);
CREATE TABLE peer_bids (seq bigserial PRIMARY KEY, auction_id bigint NOT NULL, bidder_id bigint NOT NULL,
  bid_id bigint NOT NULL, max_bid bigint NOT NULL, status text NOT NULL, reason text, price bigint NOT NULL,
  leads boolean NOT NULL, ends_at bigint NOT NULL, at bigint NOT NULL, UNIQUE (bidder_id, bid_id));
CREATE INDEX ON peer_bids (auction_id, seq);
${sqlIncrement()}
CREATE OR REPLACE FUNCTION peer_place_bid(a_id bigint, bidder bigint, b_id bigint, max_bid bigint, now_ms bigint, soft_ms bigint)
RETURNS TABLE (status text, reason text, price bigint, leads boolean, ends_at bigint, seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
  a peer_auctions%ROWTYPE;
  done peer_bids%ROWTYPE;
  np bigint; nl bigint; nm bigint; ne bigint; why text; s bigint;
BEGIN
  SELECT * INTO a FROM peer_auctions WHERE id = a_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'rejected'::text, 'auction_not_found'::text, 0::bigint, false, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  SELECT * INTO done FROM peer_bids WHERE peer_bids.bidder_id = bidder AND peer_bids.bid_id = b_id;
  IF FOUND THEN
    RETURN QUERY SELECT done.status, done.reason, done.price, done.leads, done.ends_at, done.seq;
    RETURN;
  END IF;
  np := a.price; nl := bidder; nm := max_bid; ne := a.ends_at; why := NULL;
  IF now_ms >= a.ends_at THEN
    why := 'auction_closed';
  ELSIF a.leader_id = 0 THEN
    IF max_bid < a.price THEN why := 'bid_too_low'; END IF;
  ELSIF a.leader_id = bidder THEN
    IF max_bid <= a.leader_max THEN why := 'bid_too_low'; END IF;
  ELSIF max_bid < a.price + bench_increment(a.price) THEN
    why := 'bid_too_low';
  ELSIF max_bid > a.leader_max THEN
    np := LEAST(max_bid, a.leader_max + bench_increment(a.leader_max));
  ELSE
    nl := a.leader_id; nm := a.leader_max;
    np := LEAST(a.leader_max, max_bid + bench_increment(max_bid));
  END IF;
  IF why IS NOT NULL THEN
    INSERT INTO peer_bids (auction_id, bidder_id, bid_id, max_bid, status, reason, price, leads, ends_at, at)
      VALUES (a_id, bidder, b_id, max_bid, 'rejected', why, a.price, a.leader_id = bidder, a.ends_at, now_ms)
      RETURNING peer_bids.seq INTO s;
    RETURN QUERY SELECT 'rejected'::text, why, a.price, a.leader_id = bidder, a.ends_at, s;
    RETURN;
  END IF;
  IF (np <> a.price OR nl <> a.leader_id) AND a.ends_at - now_ms < soft_ms THEN ne := now_ms + soft_ms; END IF;
  INSERT INTO peer_bids (auction_id, bidder_id, bid_id, max_bid, status, reason, price, leads, ends_at, at)
    VALUES (a_id, bidder, b_id, max_bid, 'accepted', NULL, np, nl = bidder, ne, now_ms)
    RETURNING peer_bids.seq INTO s;
  UPDATE peer_auctions SET price = np, leader_id = nl, leader_max = nm, ends_at = ne, bid_count = bid_count + 1
    WHERE id = a_id;
  RETURN QUERY SELECT 'accepted'::text, NULL::text, np, nl = bidder, ne, s;
END $$;
`;

type Row = { status: string; reason: string | null; price: string; leads: boolean; ends_at: string; seq: string };

export class PostgresRowLockDesign implements PeerDesign {
  readonly description: string;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly softCloseMs: number,
    connections: number,
    synchronousCommit: string,
  ) {
    this.description = `Postgres: one call per bid to a PL/pgSQL function (SELECT ... FOR UPDATE the auction, proxy rule, INSERT the bid, UPDATE the auction, COMMIT), ${connections} pooled connections, synchronous_commit ${synchronousCommit}`;
  }

  static async open(databaseUrl: string, auctions: PeerAuctions, connections = 32): Promise<PostgresRowLockDesign> {
    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: connections,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 0,
    });
    await pool.query(SCHEMA);
    await pool.query(
      'INSERT INTO peer_auctions (id, price, ends_at) SELECT g, $1, $2 FROM generate_series(1, $3::bigint) g',
      [auctions.startingPrice, auctions.endsAt, auctions.count],
    );
    const { rows } = await pool.query<{ synchronous_commit: string }>('SHOW synchronous_commit');
    return new PostgresRowLockDesign(pool, auctions.softCloseMs, connections, rows[0].synchronous_commit);
  }

  async decide(bid: PeerBid): Promise<PeerOutcome> {
    const { rows } = await this.pool.query<Row>({
      name: 'peer_place_bid',
      text: 'SELECT * FROM peer_place_bid($1, $2, $3, $4, $5, $6)',
      values: [bid.auctionId, bid.bidderId, bid.bidId, bid.maxBid, bid.at, this.softCloseMs],
    });
    const r = rows[0];
    return {
      status: r.status === 'accepted' ? 'accepted' : 'rejected',
      ...(r.reason ? { reason: r.reason as PeerOutcome['reason'] } : {}),
      price: Number(r.price),
      leading: r.leads,
      endsAt: Number(r.ends_at),
      seq: Number(r.seq),
    };
  }

  async close(): Promise<void> {
    await this.pool.query('DROP TABLE IF EXISTS peer_bids; DROP TABLE IF EXISTS peer_auctions').catch(() => undefined);
    await this.pool.end();
  }
}
