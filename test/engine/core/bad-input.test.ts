import t from 'tap';
import { SHARDS_MAX, type CreateAuction } from '../../../protocol/index.js';
import { Driver } from './driver.js';

const ALICE = 2;

t.test('bad bid amounts: invalid_amount and the state is unchanged', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 100 });
  d.bid(id, 3, 1_000);
  const before = d.core.stateHash();
  const amounts: unknown[] = [
    NaN,
    -1,
    0,
    -0,
    1.5,
    100.0001,
    2 ** 32,
    2 ** 53,
    Infinity,
    -Infinity,
    '500',
    null,
    undefined,
    {},
    [500],
    true,
    1e300,
  ];
  for (const maxBid of amounts) {
    const r = d.bid(id, ALICE, maxBid as number);
    t.match(r, { status: 'rejected', reason: 'invalid_amount' }, `maxBid ${String(maxBid)}`);
  }
  t.equal(d.core.stateHash(), before);
  t.equal(d.core.lastSeq, 2 + amounts.length, 'every rejection is still a logged event');
  t.end();
});

t.test('bad bidder or bid ids: invalid_request', (t) => {
  const d = new Driver();
  const id = d.create();
  const before = d.core.stateHash();
  const cases: [unknown, unknown][] = [
    [0, 1],
    [-2, 1],
    [2 ** 32, 1],
    [1.5, 1],
    ['2', 1],
    [ALICE, 0],
    [ALICE, -1],
    [ALICE, 2 ** 53],
    [ALICE, NaN],
    [ALICE, '7'],
  ];
  for (const [bidder, bidId] of cases) {
    t.match(
      d.bid(id, bidder as number, 1_000, bidId as number),
      { status: 'rejected', reason: 'invalid_request' },
      `bidder ${String(bidder)} bid ${String(bidId)}`,
    );
  }
  t.equal(d.core.stateHash(), before);
  t.end();
});

t.test('unknown auctions, other shards, garbage ids: auction_not_found', (t) => {
  const d = new Driver({ shard: 7 });
  const id = d.create();
  const before = d.core.stateHash();
  for (const auctionId of [id + SHARDS_MAX, id + 1, 7, 0, -id, id + 0.5, NaN, 2 ** 53, String(id)]) {
    t.match(
      d.bid(auctionId as number, ALICE, 1_000),
      { status: 'rejected', reason: 'auction_not_found' },
      `auction ${String(auctionId)}`,
    );
  }
  t.equal(d.core.stateHash(), before);
  t.end();
});

t.test('bids before the start and after the close: a reason and no change', (t) => {
  const d = new Driver();
  const scheduled = d.create({ startsAt: d.now + 60_000, endsAt: d.now + 120_000 });
  const ending = d.create({ endsAt: d.now + 1_000 });
  d.advanceBy(1_000);
  const before = d.core.stateHash();
  t.match(d.bid(scheduled, ALICE, 5_000), { status: 'rejected', reason: 'auction_not_open' });
  t.match(d.bid(ending, ALICE, 5_000), { status: 'rejected', reason: 'auction_closed' });
  t.equal(d.core.stateHash(), before);
  t.end();
});

t.test('bad create commands: a reason and no auction', (t) => {
  const d = new Driver();
  const base = {
    type: 'create' as const,
    sellerId: 1,
    startingPrice: 100,
    reservePrice: 0,
    startsAt: 0,
    endsAt: d.now + 60_000,
    softCloseSeconds: 0,
  };
  const before = d.core.stateHash();
  // Fields of a create, each given a value that may not fit it: the command is invalid on purpose.
  const cases: [{ [K in keyof typeof base]?: unknown }, string][] = [
    [{ sellerId: 0 }, 'invalid_request'],
    [{ startingPrice: 0 }, 'invalid_amount'],
    [{ startingPrice: 99.5 }, 'invalid_amount'],
    [{ startingPrice: 2 ** 32 }, 'invalid_amount'],
    [{ reservePrice: 50 }, 'invalid_amount'],
    [{ reservePrice: NaN }, 'invalid_amount'],
    [{ endsAt: d.now }, 'invalid_request'],
    [{ endsAt: d.now + 401 * 24 * 3_600_000 }, 'invalid_request'],
    [{ startsAt: d.now + 120_000 }, 'invalid_request'],
    [{ startsAt: -1 }, 'invalid_request'],
    [{ softCloseSeconds: 3_601 }, 'invalid_request'],
    [{ softCloseSeconds: 1.5 }, 'invalid_request'],
    [{ endsAt: 'soon' }, 'invalid_request'],
  ];
  for (const [override, reason] of cases) {
    t.match(
      d.apply({ ...base, ...override } as CreateAuction),
      { status: 'rejected', reason, auctionId: 0 },
      JSON.stringify(override),
    );
  }
  t.equal(d.core.stateHash(), before);
  t.equal(d.core.auctionsCreated, 0);
  t.end();
});

t.test('lifecycle commands on unknown or ended auctions are refused', (t) => {
  const d = new Driver();
  const id = d.create({ endsAt: d.now + 1_000 });
  t.match(d.apply({ type: 'cancel', auctionId: id + SHARDS_MAX }), { status: 'rejected', reason: 'auction_not_found' });
  t.match(d.apply({ type: 'open', auctionId: id }), { status: 'rejected', reason: 'invalid_request' }, 'already open');
  d.advanceBy(1_000);
  const before = d.core.stateHash();
  t.match(d.apply({ type: 'close', auctionId: id, force: true }), { status: 'rejected', reason: 'auction_closed' });
  t.equal(d.core.stateHash(), before);
  t.end();
});

t.test('contract violations by the caller throw: a sequence gap or time going back', (t) => {
  const d = new Driver();
  d.create();
  t.throws(() => d.core.apply({ type: 'cancel', auctionId: 1 }, d.core.lastSeq + 2, d.now), { name: 'InvariantError' });
  t.throws(() => d.core.apply({ type: 'cancel', auctionId: 1 }, d.core.lastSeq + 1, d.now - 1), {
    name: 'InvariantError',
  });
  t.throws(() => d.core.apply({ type: 'nope' } as never, d.core.lastSeq + 1, d.now), { name: 'InvariantError' });
  t.end();
});
