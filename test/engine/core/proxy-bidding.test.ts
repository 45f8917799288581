import t from 'tap';
import { incrementAt, INCREMENT_TABLE } from '../../../protocol/index.js';
import { Driver } from './driver.js';

// Users: 1 is the seller, 2..4 bid. Prices are cents.
const SELLER = 1;
const ALICE = 2;
const BOB = 3;

function auctionWithLeader(startingPrice: number, leaderMax: number, extra: { reservePrice?: number } = {}) {
  const d = new Driver();
  const id = d.create({ sellerId: SELLER, startingPrice, ...extra });
  const first = d.bid(id, ALICE, leaderMax);
  return { d, id, first };
}

t.test('the increment table is eBay US, looked up by price', (t) => {
  const boundaries: [number, number][] = [
    [1, 5],
    [99, 5],
    [100, 25],
    [499, 25],
    [500, 50],
    [2_499, 50],
    [2_500, 100],
    [9_999, 100],
    [10_000, 250],
    [24_999, 250],
    [25_000, 500],
    [49_999, 500],
    [50_000, 1_000],
    [99_999, 1_000],
    [100_000, 2_500],
    [249_999, 2_500],
    [250_000, 5_000],
    [499_999, 5_000],
    [500_000, 10_000],
    [4_294_967_295, 10_000],
  ];
  for (const [price, increment] of boundaries) t.equal(incrementAt(price), increment, `increment at ${price}`);
  for (const [below, increment] of INCREMENT_TABLE) {
    if (Number.isFinite(below)) t.equal(incrementAt(below - 1), increment, `table row below ${below}`);
  }
  t.end();
});

t.test('first bid: at least the starting price, and the price becomes the starting price', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000 });
  const low = d.bid(id, ALICE, 999);
  t.match(low, { status: 'rejected', reason: 'bid_too_low', price: 1_000, leading: false });
  const first = d.bid(id, ALICE, 5_000);
  t.match(first, { status: 'accepted', price: 1_000, leading: true, leaderId: ALICE, bidCount: 1, outbidUserId: 0 });
  t.end();
});

t.test('B > A: the new bidder leads at A + inc(A)', (t) => {
  const { d, id } = auctionWithLeader(1_000, 2_000);
  const r = d.bid(id, BOB, 3_000);
  t.match(r, { status: 'accepted', leading: true, leaderId: BOB, price: 2_050, outbidUserId: ALICE });
  t.end();
});

t.test('B > A with less than a full increment above A: the price is capped at B', (t) => {
  const { d, id } = auctionWithLeader(1_000, 2_000);
  const r = d.bid(id, BOB, 2_020);
  t.match(r, { status: 'accepted', leading: true, price: 2_020 });
  t.end();
});

t.test('the increment is looked up at the losing maximum, not at the new price', (t) => {
  // Leader max 99c (increment 5c); the newcomer's 5.00 would be in the 25c band.
  const { d, id } = auctionWithLeader(50, 99);
  const r = d.bid(id, BOB, 500);
  t.match(r, { status: 'accepted', leading: true, price: 104 });
  // And for the loser side: B = 100 (increment 25) loses to A = 500.
  const { d: d2, id: id2 } = auctionWithLeader(50, 500);
  t.match(d2.bid(id2, BOB, 100), { status: 'accepted', leading: false, price: 125, leaderId: ALICE });
  t.end();
});

t.test('B <= A: the leader stays at B + inc(B); the bid is accepted but not leading', (t) => {
  const { d, id } = auctionWithLeader(1_000, 5_000);
  const r = d.bid(id, BOB, 3_000);
  t.match(r, { status: 'accepted', leading: false, leaderId: ALICE, price: 3_100, outbidUserId: 0, bidCount: 2 });
  t.end();
});

t.test('B < A within one increment: the leader stays at A', (t) => {
  const { d, id } = auctionWithLeader(1_000, 3_050);
  t.match(d.bid(id, BOB, 3_000), { status: 'accepted', leading: false, price: 3_050 });
  t.end();
});

t.test('equal maxima: the earlier bid wins at that maximum', (t) => {
  const { d, id } = auctionWithLeader(1_000, 3_000);
  const r = d.bid(id, BOB, 3_000);
  t.match(r, { status: 'accepted', leading: false, leaderId: ALICE, price: 3_000 });
  t.match(d.core.auctionState(id), { leaderId: ALICE, price: 3_000 });
  t.end();
});

t.test('a competing bid must reach price + increment', (t) => {
  const { d, id } = auctionWithLeader(1_000, 5_000);
  d.bid(id, BOB, 3_000); // price 3,100
  t.match(d.bid(id, 4, 3_199), { status: 'rejected', reason: 'bid_too_low', price: 3_100 }, 'inc(31.00) is 1.00');
  t.match(d.bid(id, 4, 3_200), { status: 'accepted', price: 3_300 });
  t.end();
});

t.test('a leader raising their own maximum does not move the price', (t) => {
  const { d, id } = auctionWithLeader(1_000, 2_000);
  const raise = d.bid(id, ALICE, 9_000);
  t.match(raise, { status: 'accepted', leading: true, price: 1_000, bidCount: 2 });
  t.match(
    d.bid(id, ALICE, 9_000),
    { status: 'rejected', reason: 'bid_too_low', leading: true },
    'not to the same maximum',
  );
  t.match(d.bid(id, ALICE, 8_000), { status: 'rejected', reason: 'bid_too_low' }, 'nor lower it');
  t.match(d.bid(id, BOB, 5_000), { status: 'accepted', leading: false, price: 5_100 }, 'the raised maximum defends');
  t.end();
});

t.test('reserve: a bid reaching the reserve lifts the price to it', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000, reservePrice: 5_000 });
  t.match(d.bid(id, ALICE, 3_000), { status: 'accepted', price: 1_000, reserveMet: false });
  t.match(d.core.auctionState(id), { hasReserve: true, reserveMet: false });
  t.match(
    d.bid(id, ALICE, 6_000),
    { status: 'accepted', price: 5_000, reserveMet: true },
    'the leader raising to the reserve',
  );
  t.match(d.bid(id, BOB, 5_500), { status: 'accepted', leading: false, price: 5_600 }, 'bidding goes on above it');
  t.end();
});

t.test('reserve: a first bid above the reserve starts at the reserve', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000, reservePrice: 5_000 });
  t.match(d.bid(id, ALICE, 7_000), { status: 'accepted', price: 5_000, reserveMet: true });
  t.end();
});

t.test('reserve: a newcomer whose maximum reaches the reserve takes the lead at the reserve', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000, reservePrice: 5_000 });
  d.bid(id, ALICE, 2_000);
  t.match(d.bid(id, BOB, 8_000), {
    status: 'accepted',
    leading: true,
    price: 5_000,
    reserveMet: true,
    outbidUserId: ALICE,
  });
  t.end();
});

t.test('reserve: a losing bid that lifts the leader past the reserve sets the price to the reserve', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000, reservePrice: 5_000 });
  d.bid(id, ALICE, 9_000); // leads at the reserve already
  t.match(d.core.auctionState(id), { price: 5_000 });
  t.match(d.bid(id, BOB, 4_000), { status: 'rejected', reason: 'bid_too_low' }, 'below price + increment');
  t.end();
});

t.test('the seller cannot bid on their own auction', (t) => {
  const d = new Driver();
  const id = d.create({ sellerId: SELLER });
  const before = d.core.stateHash();
  t.match(d.bid(id, SELLER, 5_000), { status: 'rejected', reason: 'seller_cannot_bid' });
  t.equal(d.core.stateHash(), before);
  t.end();
});

t.test('amounts up to the stated maximum are accepted exactly', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 4_294_000_000 });
  t.match(d.bid(id, ALICE, 4_294_967_295), { status: 'accepted', price: 4_294_000_000 });
  t.match(d.bid(id, BOB, 4_294_967_295), { status: 'accepted', leading: false, price: 4_294_967_295 });
  t.end();
});
