import t from 'tap';
import { Driver } from './driver.js';

const SELLER = 1;
const ALICE = 2;
const BOB = 3;
const MINUTE = 60_000;

t.test('soft close: a bid that moves the price in the last N seconds extends the end to t + N', (t) => {
  const d = new Driver();
  const endsAt = d.now + 10 * MINUTE;
  const id = d.create({ endsAt, softCloseSeconds: 120 });
  d.bid(id, ALICE, 5_000);
  d.advanceTo(endsAt - 30_000);
  const late = d.bid(id, BOB, 3_000); // moves the price, Alice still leads
  t.match(late, { status: 'accepted', leading: false, endsAt: endsAt - 30_000 + 120_000 });
  t.equal(d.core.auctionState(id)!.endsAt, endsAt + 90_000);
  t.equal(d.core.nextDueAt(), endsAt + 90_000, 'the close timer moved with it');
  t.same(d.advanceTo(endsAt + 1), [], 'nothing closes at the original end');
  t.end();
});

t.test('soft close: early bids and rejected late bids never extend', (t) => {
  const d = new Driver();
  const endsAt = d.now + 10 * MINUTE;
  const id = d.create({ endsAt, softCloseSeconds: 60 });
  t.match(d.bid(id, ALICE, 5_000), { endsAt }, 'a bid outside the window');
  d.advanceTo(endsAt - 10_000);
  t.match(d.bid(id, BOB, 1_000), { status: 'rejected', reason: 'bid_too_low', endsAt }, 'a rejected late bid');
  t.match(d.bid(id, SELLER, 9_000), { status: 'rejected', endsAt });
  t.match(d.bid(id, ALICE, 9_000), { status: 'accepted', price: 1_000, endsAt }, 'the leader raising silently');
  t.equal(d.core.auctionState(id)!.endsAt, endsAt);
  t.end();
});

t.test('soft close: repeated sniping keeps extending, and the auction closes after the last one', (t) => {
  const d = new Driver();
  const endsAt = d.now + MINUTE;
  const id = d.create({ endsAt, softCloseSeconds: 30 });
  let leaderMax = 1_000;
  for (let round = 0; round < 5; round++) {
    d.advanceTo(d.core.auctionState(id)!.endsAt - 1_000);
    leaderMax += 1_000;
    t.match(d.bid(id, round % 2 ? ALICE : BOB, leaderMax), { status: 'accepted', leading: true });
  }
  const lastEnd = d.core.auctionState(id)!.endsAt;
  t.equal(lastEnd, d.now + 30_000);
  t.same(d.advanceTo(lastEnd - 1), [], 'still open one millisecond before');
  const [closed] = d.advanceTo(lastEnd);
  t.match(
    closed,
    { type: 'close', status: 'accepted', winnerId: BOB, auctionStatus: 'closed' },
    'the last sniper (round 4) wins',
  );
  t.end();
});

t.test('a bid at or after endsAt is rejected even before the close timer ran', (t) => {
  const d = new Driver();
  const endsAt = d.now + MINUTE;
  const id = d.create({ endsAt });
  d.now = endsAt; // time moved, timers not fired yet
  t.match(d.bid(id, ALICE, 5_000), { status: 'rejected', reason: 'auction_closed' });
  t.end();
});

t.test('closing picks the leader as winner at the current price', (t) => {
  const d = new Driver();
  const endsAt = d.now + MINUTE;
  const id = d.create({ endsAt, startingPrice: 1_000 });
  d.bid(id, ALICE, 5_000);
  d.bid(id, BOB, 3_000);
  const fired = d.advanceTo(endsAt);
  t.equal(fired.length, 1);
  t.match(fired[0], { type: 'close', status: 'accepted', auctionId: id, winnerId: ALICE, price: 3_100 });
  t.match(d.core.auctionState(id), { status: 'closed', winnerId: ALICE, price: 3_100, leaderId: ALICE });
  t.match(d.bid(id, BOB, 9_000), { status: 'rejected', reason: 'auction_closed' });
  t.equal(d.core.auctionsLive, 0, 'no timer left');
  t.end();
});

t.test('closing with no bids: no winner', (t) => {
  const d = new Driver();
  const id = d.create({ endsAt: d.now + MINUTE });
  const [closed] = d.advanceBy(MINUTE);
  t.match(closed, { status: 'accepted', winnerId: 0, auctionStatus: 'closed' });
  t.equal(d.core.auctionState(id)!.winnerId, 0);
  t.end();
});

t.test('reserve not met: closed without a winner', (t) => {
  const d = new Driver();
  const id = d.create({ endsAt: d.now + MINUTE, reservePrice: 10_000 });
  d.bid(id, ALICE, 9_999);
  const [closed] = d.advanceBy(MINUTE);
  t.match(closed, { status: 'accepted', winnerId: 0, reserveMet: false, price: 1_000 });
  t.match(d.core.auctionState(id), {
    status: 'closed',
    hasReserve: true,
    reserveMet: false,
    winnerId: 0,
    leaderId: ALICE,
  });
  t.end();
});

t.test('reserve met: the leader wins', (t) => {
  const d = new Driver();
  d.create({ endsAt: d.now + MINUTE, reservePrice: 10_000 });
  const id = d.create({ endsAt: d.now + MINUTE, reservePrice: 10_000 });
  d.bid(id, ALICE, 10_000);
  const fired = d.advanceBy(MINUTE);
  t.equal(fired.length, 2, 'both auctions close');
  t.match(fired[1], { auctionId: id, winnerId: ALICE, reserveMet: true, price: 10_000 });
  t.end();
});

t.test('cancel: ends an open auction with no winner, and is logged once', (t) => {
  const d = new Driver();
  const id = d.create({ endsAt: d.now + MINUTE });
  d.bid(id, ALICE, 5_000);
  d.advanceBy(1_000);
  t.match(d.apply({ type: 'cancel', auctionId: id }), { status: 'accepted', auctionStatus: 'cancelled', winnerId: 0 });
  t.match(d.core.auctionState(id), { status: 'cancelled', endsAt: d.now, winnerId: 0 });
  t.match(d.apply({ type: 'cancel', auctionId: id }), { status: 'rejected', reason: 'auction_closed' });
  t.match(d.bid(id, BOB, 9_000), { status: 'rejected', reason: 'auction_closed' });
  t.same(d.advanceBy(MINUTE), [], 'no close for a cancelled auction');
  t.end();
});

t.test('an operator close ends an auction now; a timer close before its time is refused', (t) => {
  const d = new Driver();
  const id = d.create({ endsAt: d.now + MINUTE });
  d.bid(id, ALICE, 5_000);
  t.match(d.apply({ type: 'close', auctionId: id, force: false }), { status: 'rejected', reason: 'not_due' });
  t.match(d.apply({ type: 'close', auctionId: id, force: true }), { status: 'accepted', winnerId: ALICE });
  t.match(d.core.auctionState(id), { status: 'closed', endsAt: d.now });
  t.end();
});

t.test('scheduled start: bids before it are refused; the timer opens it on time', (t) => {
  const d = new Driver();
  const startsAt = d.now + MINUTE;
  const endsAt = startsAt + MINUTE;
  const id = d.create({ startsAt, endsAt });
  t.match(d.core.auctionState(id), { status: 'scheduled', startsAt, endsAt, version: 1 });
  const before = d.core.stateHash();
  t.match(d.bid(id, ALICE, 5_000), { status: 'rejected', reason: 'auction_not_open' });
  t.equal(d.core.stateHash(), before, 'a refused bid changes nothing');
  t.match(d.apply({ type: 'open', auctionId: id }), { status: 'rejected', reason: 'not_due' });
  t.same(d.advanceTo(startsAt - 1), []);
  const [opened] = d.advanceTo(startsAt);
  t.match(opened, { type: 'open', status: 'accepted', auctionStatus: 'open', version: 2 });
  t.match(d.bid(id, ALICE, 5_000), { status: 'accepted', endsAt });
  t.equal(d.core.nextDueAt(), endsAt, 'the next timer is the close');
  const [closed] = d.advanceTo(endsAt);
  t.match(closed, { type: 'close', winnerId: ALICE });
  t.end();
});

t.test('timers fire in (due time, auction number) order', (t) => {
  const d = new Driver();
  const end = d.now + MINUTE;
  const a = d.create({ endsAt: end + 2 });
  const b = d.create({ endsAt: end });
  const c = d.create({ endsAt: end });
  const s = d.create({ startsAt: end - 5, endsAt: end + 1 });
  const fired = d.advanceTo(end + 10).map((o) => [o.type, o.auctionId]);
  t.same(fired, [
    ['open', s],
    ['close', b],
    ['close', c],
    ['close', s],
    ['close', a],
  ]);
  t.end();
});

t.test('versions grow with every change of an auction', (t) => {
  const d = new Driver();
  const id = d.create({ startsAt: d.now + 10, endsAt: d.now + MINUTE });
  const versions = [d.core.auctionState(id)!.version];
  d.advanceBy(10);
  versions.push(d.core.auctionState(id)!.version);
  versions.push(d.bid(id, ALICE, 2_000).version);
  versions.push(d.bid(id, BOB, 3_000).version);
  versions.push(d.bid(id, BOB, 4_000).version);
  d.advanceBy(MINUTE);
  versions.push(d.core.auctionState(id)!.version);
  t.same(versions, [1, 2, 3, 4, 5, 6]);
  t.end();
});

t.test('a full shard refuses creation until the oldest slot has ended; ended auctions are archived', (t) => {
  const d = new Driver({ auctionsMax: 2 });
  const first = d.create({ endsAt: d.now + MINUTE });
  d.create({ endsAt: d.now + 2 * MINUTE });
  t.match(
    d.apply({
      type: 'create',
      sellerId: SELLER,
      startingPrice: 100,
      reservePrice: 0,
      startsAt: 0,
      endsAt: d.now + MINUTE,
      softCloseSeconds: 0,
    }),
    { status: 'rejected', reason: 'shard_full' },
  );
  d.bid(first, ALICE, 500);
  d.advanceBy(MINUTE); // closes the first
  const third = d.create({ endsAt: d.now + MINUTE });
  t.not(third, first);
  t.equal(d.core.auctionState(first), null, 'the first auction left the engine');
  t.match(d.bid(first, BOB, 9_000), { status: 'rejected', reason: 'auction_closed' });
  t.match(d.bid(third, BOB, 1_000), { status: 'accepted' });
  d.core.verify();
  t.end();
});
