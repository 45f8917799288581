import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import { encode } from '../../protocol/index.js';
import { Latency } from './latency.js';

export type BaselineResult =
  | { name: string; bidsPerSec: number; p50Ms: number; p99Ms: number; latency: string; note: string }
  | { name: string; skipped: string };

/**
 * Baseline (a), the naive log ceiling: one JetStream publish (and PubAck)
 * per bid, `inflight` at a time, on the same nats-server. What a design
 * without batching could reach at best, before deciding anything.
 */
export async function jetstreamPerBid(
  natsUrl: string,
  credentials: { user?: string; pass?: string },
  seconds: number,
  inflight = 256,
): Promise<BaselineResult> {
  const nc = await connect({ servers: natsUrl, ...credentials });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'BENCH_NAIVE', subjects: ['bench.naive.>'] });
    const js = jetstream(nc);
    const latency = new Latency();
    const deadline = performance.now() + seconds * 1_000;
    let published = 0;
    let bidId = 0;
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (performance.now() < deadline) {
          const payload = encode({
            type: 'bid',
            auctionId: 1024 + (bidId % 2_000) * 1024,
            bidderId: 2 + (bidId % 500),
            bidId: ++bidId,
            maxBid: 500 + bidId,
          });
          const sentAt = performance.now();
          await js.publish(`bench.naive.${bidId % 4}`, payload);
          // Closed loop (each sender waits for its ack): a throughput ceiling, its latency is only indicative.
          latency.record(sentAt, performance.now());
          published++;
        }
      }),
    );
    await jsm.streams.delete('BENCH_NAIVE');
    return {
      name: 'jetstream-per-bid',
      bidsPerSec: Math.round(published / seconds),
      p50Ms: latency.ms(50),
      p99Ms: latency.ms(99),
      latency: latency.encode(),
      note: `one JetStream publish + PubAck per bid, ${inflight} in flight, no decision made`,
    };
  } finally {
    await nc.close();
  }
}

/**
 * Baseline (b), the classic design: a Postgres transaction per bid with a row
 * lock. `SELECT ... FOR UPDATE` the auction, insert the bid, update the price
 * and leader (proxy rule), commit; `connections` clients in parallel over
 * `auctions` auctions. Skipped when DATABASE_URL is not set or not reachable.
 */
export async function postgresRowLock(
  databaseUrl: string | undefined,
  seconds: number,
  connections = 32,
  auctions = 2_000,
): Promise<BaselineResult> {
  const name = 'postgres-row-lock';
  if (!databaseUrl)
    return {
      name,
      skipped:
        'DATABASE_URL is not set: set it (e.g. postgres://postgres@127.0.0.1:5432/test) to run the Postgres baseline',
    };
  const setup = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 3_000 });
  try {
    await setup.connect();
  } catch (error) {
    return { name, skipped: `Postgres at DATABASE_URL is not reachable: ${(error as Error).message}` };
  }
  const clients: pg.Client[] = [];
  try {
    await setup.query(`DROP TABLE IF EXISTS bench_bids; DROP TABLE IF EXISTS bench_auctions;
      CREATE TABLE bench_auctions (id bigint PRIMARY KEY, price bigint NOT NULL, leader_id bigint NOT NULL DEFAULT 0, leader_max bigint NOT NULL DEFAULT 0, bid_count int NOT NULL DEFAULT 0);
      CREATE TABLE bench_bids (id bigserial PRIMARY KEY, auction_id bigint NOT NULL, bidder_id bigint NOT NULL, max_bid bigint NOT NULL, accepted boolean NOT NULL, price_after bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
      CREATE INDEX ON bench_bids (auction_id, id);
      INSERT INTO bench_auctions (id, price) SELECT g, 100 FROM generate_series(1, ${auctions}) g;`);
    for (let i = 0; i < connections; i++) {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      clients.push(c);
    }
    const latency = new Latency();
    const deadline = performance.now() + seconds * 1_000;
    let committed = 0;
    let n = 0;
    await Promise.all(
      clients.map(async (c, w) => {
        const maxima = new Map<number, number>();
        while (performance.now() < deadline) {
          const auctionId = 1 + ((n++ * 7919) % auctions);
          const bidderId = 1_000 + w;
          const maxBid = (maxima.get(auctionId) ?? 1_000 + w * 7) + 500;
          maxima.set(auctionId, maxBid);
          const sentAt = performance.now();
          await c.query('BEGIN');
          const row = (
            await c.query('SELECT price, leader_id, leader_max FROM bench_auctions WHERE id = $1 FOR UPDATE', [
              auctionId,
            ])
          ).rows[0] as { price: string; leader_id: string; leader_max: string };
          const price = Number(row.price);
          const leaderMax = Number(row.leader_max);
          const accepted = maxBid > leaderMax;
          const priceAfter = accepted
            ? Math.min(maxBid, leaderMax === 0 ? price : leaderMax + 100)
            : Math.min(leaderMax, maxBid + 100);
          await c.query(
            'INSERT INTO bench_bids (auction_id, bidder_id, max_bid, accepted, price_after) VALUES ($1, $2, $3, $4, $5)',
            [auctionId, bidderId, maxBid, accepted, priceAfter],
          );
          await c.query(
            accepted
              ? 'UPDATE bench_auctions SET price = $2, leader_id = $3, leader_max = $4, bid_count = bid_count + 1 WHERE id = $1'
              : 'UPDATE bench_auctions SET price = $2, bid_count = bid_count + 1 WHERE id = $1',
            accepted ? [auctionId, priceAfter, bidderId, maxBid] : [auctionId, priceAfter],
          );
          await c.query('COMMIT');
          latency.record(sentAt, performance.now());
          committed++;
        }
      }),
    );
    await setup.query('DROP TABLE IF EXISTS bench_bids; DROP TABLE IF EXISTS bench_auctions;');
    return {
      name,
      bidsPerSec: Math.round(committed / seconds),
      p50Ms: latency.ms(50),
      p99Ms: latency.ms(99),
      latency: latency.encode(),
      note: `BEGIN; SELECT ... FOR UPDATE; INSERT bid; UPDATE auction; COMMIT per bid, ${connections} connections, ${auctions} auctions, synchronous_commit as configured`,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await setup.end().catch(() => undefined);
  }
}
