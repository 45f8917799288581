import t, { type Test } from 'tap';
import fc from 'fast-check';
import { connect } from '@nats-io/transport-node';
import { ReferenceModel } from '../../testkit/reference-model.js';
import { startNats, WsClient } from '../../testkit/index.js';
import { Tokens } from '../../gateway/auth.js';
import { SHARDS_MAX } from '../../protocol/index.js';
import { decideProxyBid, type PeerAuctionState } from '../../bench/peers/proxy-rule.js';
import { RedisLuaDesign } from '../../bench/peers/redis-lua.js';
import { createPeerStream, JetStreamFirstDesign, runDecider } from '../../bench/peers/jetstream-first.js';
import type { PeerAuctions, PeerDesign, PeerOutcome } from '../../bench/peers/design.js';
import { RedisServer, startPeer } from '../../bench/harness/peers.js';

/**
 * The peers of make bench (bench/peers/): the classic designs the engine is
 * measured against must decide bids by the same rules, so their figures
 * compare like with like. The TypeScript rule is held to the reference
 * model; the Redis (Lua) and JetStream-first copies, run on real servers,
 * to the TypeScript rule; the front door, a real process, to the gateway's
 * frames and errors. (The Postgres peer's PL/pgSQL copy runs only in make
 * bench: tests do not depend on a PostgreSQL server.)
 */
const T0 = 1_800_000_000_000;
const SOFT_MS = 2_000;
const AUCTIONS: PeerAuctions = { count: 3, startingPrice: 100, endsAt: T0 + 60_000, softCloseMs: SOFT_MS };

/** Random bids on a few auctions by a few bidders, some retried, the clock moving towards (and past) the end. */
const bidSequences = fc.array(
  fc.record({
    auction: fc.integer({ min: 1, max: 3 }),
    bidder: fc.integer({ min: 2, max: 5 }),
    maxBid: fc.oneof(fc.integer({ min: 1, max: 3_000 }), fc.integer({ min: 1, max: 2_000_000 })),
    step: fc.integer({ min: 0, max: 3_000 }),
    retry: fc.boolean(),
  }),
  { minLength: 1, maxLength: 60 },
);

type Step = { auction: number; bidder: number; maxBid: number; step: number; retry: boolean };
type Bid = { auctionId: number; bidderId: number; bidId: number; maxBid: number; at: number };

/** The bids of a sequence: bid ids from `idBase + 1`, auctions from `auctionBase + 1`; a retry repeats an earlier bid of the bidder. */
function bidsOf(sequence: Step[], idBase = 0, auctionBase = 0): Bid[] {
  const bids: Bid[] = [];
  let at = T0;
  for (const [i, b] of sequence.entries()) {
    at += b.step * 10;
    const earlier = b.retry ? bids.find((x) => x.bidderId === b.bidder) : undefined;
    bids.push(
      earlier
        ? { ...earlier, at }
        : { auctionId: auctionBase + b.auction, bidderId: b.bidder, bidId: idBase + i + 1, maxBid: b.maxBid, at },
    );
  }
  return bids;
}

/** What the TypeScript rule says of each bid in turn (seq left out); a retried (bidder, bidId) gets its first outcome. */
function expected(bids: Bid[]): Omit<PeerOutcome, 'seq'>[] {
  const states = new Map<number, PeerAuctionState>();
  const first = new Map<string, Omit<PeerOutcome, 'seq'>>();
  return bids.map((b) => {
    const key = `${b.bidderId}:${b.bidId}`;
    const earlier = first.get(key);
    if (earlier) return earlier;
    const s = states.get(b.auctionId) ?? freshState();
    const { state, seq: _seq, ...outcome } = decideProxyBid(s, b.bidderId, b.maxBid, b.at, SOFT_MS);
    states.set(b.auctionId, state);
    first.set(key, outcome);
    return outcome;
  });
}

const freshState = (): PeerAuctionState => ({
  price: 100,
  leaderId: 0,
  leaderMax: 0,
  endsAt: AUCTIONS.endsAt,
  bidCount: 0,
});
const withoutSeq = ({ seq: _seq, ...rest }: PeerOutcome) => rest;

t.test("the peers' rule decides as the reference model does (proxy bidding, increments, soft close, closing)", (t) => {
  fc.assert(
    fc.property(bidSequences, (sequence) => {
      const bids = bidsOf(sequence).filter(
        (b, i, all) => all.findIndex((x) => x.bidderId === b.bidderId && x.bidId === b.bidId) === i,
      );
      const model = new ReferenceModel(0, 16, 1_000);
      for (let n = 1; n <= AUCTIONS.count; n++)
        model.apply(
          {
            type: 'create',
            sellerId: 1,
            startingPrice: 100,
            reservePrice: 0,
            startsAt: 0,
            endsAt: AUCTIONS.endsAt,
            softCloseSeconds: SOFT_MS / 1_000,
          },
          0,
          T0,
        );
      const states = new Map<number, PeerAuctionState>();
      let seq = 0;
      for (const b of bids) {
        // The reference closes an auction by its timer command: applied when due, as the engine does.
        for (let due = model.due(b.at); due; due = model.due(b.at)) model.apply(due, ++seq, b.at);
        const ref = model.apply(
          {
            type: 'bid',
            auctionId: b.auctionId * SHARDS_MAX,
            bidderId: b.bidderId,
            bidId: b.bidId,
            maxBid: b.maxBid,
          },
          ++seq,
          b.at,
        );
        const d = decideProxyBid(states.get(b.auctionId) ?? freshState(), b.bidderId, b.maxBid, b.at, SOFT_MS);
        states.set(b.auctionId, d.state);
        t.equal(`${d.status}/${d.reason}`, `${ref.status}/${ref.reason}`, JSON.stringify(b));
        if (d.status === 'accepted') t.same([d.price, d.leading, d.endsAt], [ref.price, ref.leading, ref.endsAt]);
      }
    }),
    { numRuns: 300 },
  );
  t.end();
});

const RUNS = 40;

/** Runs random sequences through a design one bid at a time; every outcome must be the TypeScript rule's. */
async function holdsToTheRule(t: Test, design: PeerDesign): Promise<void> {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(bidSequences, async (sequence) => {
      // Each run on auctions and bid ids of its own (the design was set up with AUCTIONS.count per run).
      const bids = bidsOf(sequence, run * 1_000, run * AUCTIONS.count);
      run++;
      const want = expected(bids);
      for (const [i, b] of bids.entries()) {
        const got = withoutSeq(await design.decide(b));
        if (JSON.stringify(got) !== JSON.stringify(want[i]))
          throw new Error(`bid ${i} ${JSON.stringify(b)}: got ${JSON.stringify(got)}, want ${JSON.stringify(want[i])}`);
      }
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} random sequences decided as the rule decides`);
}

const manyAuctions: PeerAuctions = { ...AUCTIONS, count: AUCTIONS.count * (RUNS + 5) };

t.test('the Redis peer (Lua on a real redis-server, appendonly yes) decides as the rule does', async (t) => {
  const redis = await RedisServer.start('everysec');
  t.teardown(() => redis.close());
  const design = await RedisLuaDesign.open(redis.url, manyAuctions);
  t.teardown(() => design.close());
  t.match(design.description, /appendfsync everysec/);
  await holdsToTheRule(t, design);
  const unknown = await design.decide({ auctionId: 999_999, bidderId: 2, bidId: 999_999, maxBid: 500, at: T0 });
  t.same([unknown.status, unknown.reason], ['rejected', 'auction_not_found']);
});

t.test('the JetStream-first peer (publish per bid, ordered-consumer decider) decides as the rule does', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const doorConnection = await connect({ servers: nats.url });
  const deciderConnection = await connect({ servers: nats.url });
  await createPeerStream(doorConnection);
  const deciding = runDecider(deciderConnection, manyAuctions);
  const design = await JetStreamFirstDesign.open(doorConnection, 'door-1');
  t.teardown(async () => {
    await design.close();
    await deciderConnection.close();
    await deciding;
  });
  await holdsToTheRule(t, design);
  const unknown = await design.decide({ auctionId: 999_999, bidderId: 2, bidId: 999_999, maxBid: 500, at: T0 });
  t.same([unknown.status, unknown.reason], ['rejected', 'auction_not_found']);
});

t.test("the front door speaks the gateway's bid frames and refuses what the gateway refuses", async (t) => {
  const secret = 'peer-test-secret-0123456789';
  const peer = await startPeer('redis-everysec', { secret, auctions: 10 });
  t.teardown(() => peer.close());
  t.ok(peer.pids['front door'] && peer.pids['redis-server'], 'both processes have pids to meter');
  const tokens = new Tokens(secret, 60_000);

  const refused = (url: string) =>
    WsClient.connect(url, 'json').then(
      () => 'opened',
      (error: { statusCode?: number }) => error.statusCode,
    );
  t.equal(await refused(`${peer.wsUrl}?token=v1.forged.token&format=msgpack`), 401, 'a malformed token');
  t.equal(await refused(`${peer.wsUrl}?format=msgpack`), 401, 'no token');
  const forged = new Tokens('another-secret-0123456789abc', 60_000).mint(7).token;
  t.equal(await refused(`${peer.wsUrl}?token=${forged}`), 401, 'a token signed with another secret');

  const alice = await WsClient.connect(`${peer.wsUrl}?token=${tokens.mint(7).token}&format=msgpack`, 'msgpack');
  const bob = await WsClient.connect(`${peer.wsUrl}?token=${tokens.mint(8).token}`, 'json');
  t.teardown(() => {
    alice.socket.terminate();
    bob.socket.terminate();
  });
  const first = await alice.request({ type: 'bid', auctionId: 1, maxBid: 1_000, bidId: 1 });
  t.match(first, { type: 'bid.result', bidId: 1, auctionId: 1, status: 'accepted', price: 100, leading: true });
  const outbid = await bob.request({ type: 'bid', auctionId: 1, maxBid: 2_000, bidId: 1 });
  t.match(outbid, { type: 'bid.result', status: 'accepted', price: 1_050, leading: true }, 'bob leads at 1,000 + 50');
  const low = await alice.request({ type: 'bid', auctionId: 1, maxBid: 1_060, bidId: 2 });
  t.match(low, { status: 'rejected', reason: 'bid_too_low', price: 1_050 });
  const retry = await alice.request({ type: 'bid', auctionId: 1, maxBid: 1_000, bidId: 1 });
  t.match(retry, { status: 'accepted', price: 100, leading: true }, 'a retried bid id gets its first outcome');
  t.match(await alice.request({ type: 'bid', auctionId: 999, maxBid: 5_000, bidId: 3 }), {
    status: 'rejected',
    reason: 'auction_not_found',
  });

  for (const maxBid of [Number.NaN, -5, 0, 12.5, 2 ** 40, '100', null])
    t.match(
      await alice.request({ type: 'bid', auctionId: 1, maxBid, bidId: 10 }),
      { type: 'error', code: 'invalid_amount' },
      `maxBid ${String(maxBid)}`,
    );
  for (const auctionId of [0, -1, 1.5, 'x', 2 ** 60])
    t.match(
      await alice.request({ type: 'bid', auctionId, maxBid: 5_000, bidId: 11 }),
      { type: 'error', code: 'invalid_request' },
      `auctionId ${String(auctionId)}`,
    );
  t.match(await alice.request({ type: 'subscribe', auctionId: 1 }), { type: 'error', code: 'invalid_request' });
  bob.sendRaw('{not json');
  t.match(
    await bob.waitFor((m) => m.type === 'error'),
    { code: 'invalid_request' },
    'a malformed frame: an error, the connection stays',
  );
  t.match(await bob.request({ type: 'bid', auctionId: 2, maxBid: 500, bidId: 2 }), { status: 'accepted', price: 100 });

  const status = await peer.door.status();
  t.equal(status.pending, 0);
  t.equal(status.decided, 6, 'six bids reached the design; nothing malformed did');
  t.equal(status.invalid, 14);
});
