import t from 'tap';
import fc from 'fast-check';
import { DueHeap, IdempotencyTable, decodeSnapshot, encodeSnapshot } from '../../../engine/core/index.js';
import { Driver, replay } from './driver.js';
import { AuctionCore } from '../../../engine/core/index.js';

const ALICE = 2;
const BOB = 3;

t.test('a retried (bidder, bidId) gets the original answer and never counts twice', (t) => {
  const d = new Driver();
  const id = d.create({ startingPrice: 1_000 });
  const original = d.bid(id, ALICE, 5_000, 77);
  d.bid(id, BOB, 3_000, 1);
  const seqBefore = d.core.lastSeq;
  const hashBefore = d.core.stateHash();
  const retry = d.bid(id, ALICE, 5_000, 77);
  t.match(retry, {
    status: 'accepted',
    duplicate: true,
    seq: original.seq,
    price: original.price,
    leading: true,
    endsAt: original.endsAt,
    bidId: 77,
  });
  t.equal(d.core.stateHash(), hashBefore, 'the retry changed nothing');
  t.equal(d.core.auctionState(id)!.bidCount, 2);
  t.equal(d.core.lastSeq, seqBefore + 1);
  t.match(
    d.core.lookupBid(ALICE, 77, id),
    { duplicate: true, seq: original.seq },
    'the engine can answer a retry without logging it',
  );
  t.equal(d.core.lookupBid(BOB, 77, id), null, 'keys are per bidder');
  t.end();
});

t.test('a remembered bid id reused for another auction is refused, not answered with the other auction', (t) => {
  const d = new Driver();
  const first = d.create();
  const second = d.create();
  d.bid(first, ALICE, 5_000, 42);
  const hashBefore = d.core.stateHash();
  t.match(d.bid(second, ALICE, 5_000, 42), {
    status: 'rejected',
    reason: 'invalid_request',
    auctionId: second,
    duplicate: false,
  });
  t.equal(d.core.lookupBid(ALICE, 42, second), null);
  t.equal(d.core.stateHash(), hashBefore);
  t.equal(d.core.auctionState(second)!.bidCount, 0);
  t.end();
});

t.test('a rejected bid is not remembered: its retry is decided again', (t) => {
  const d = new Driver();
  const id = d.create({ startsAt: d.now + 1_000, endsAt: d.now + 60_000 });
  t.match(d.bid(id, ALICE, 5_000, 9), { status: 'rejected', reason: 'auction_not_open' });
  d.advanceBy(1_000);
  t.match(d.bid(id, ALICE, 5_000, 9), { status: 'accepted', duplicate: false }, 'after the auction opened');
  t.end();
});

t.test('idempotency survives snapshot and restore, and replay rebuilds it', (t) => {
  const d = new Driver({ idempotencyEntriesMax: 16 });
  const id = d.create();
  const original = d.bid(id, ALICE, 5_000, 1234);
  const restored = decodeSnapshot(encodeSnapshot(d.core), { auctionsMax: 1024, idempotencyEntriesMax: 16 });
  t.match(restored.lookupBid(ALICE, 1234, id), { seq: original.seq, price: original.price });
  const replayed = replay(d.log, new AuctionCore({ shard: 7, auctionsMax: 1024, idempotencyEntriesMax: 16 }));
  t.match(replayed.lookupBid(ALICE, 1234, id), { seq: original.seq });
  t.equal(replayed.stateHash(), d.core.stateHash());
  t.end();
});

t.test('a forgotten bid id still never counts twice', (t) => {
  // Capacity 2: two generations of one bid each.
  const d = new Driver({ idempotencyEntriesMax: 2 });
  const id = d.create();
  d.bid(id, ALICE, 5_000, 1);
  d.bid(id, BOB, 2_000, 1);
  d.bid(id, BOB, 3_000, 2);
  t.equal(d.core.lookupBid(ALICE, 1, id), null, 'the oldest generation was dropped');
  t.ok(d.core.lookupBid(BOB, 1, id) && d.core.lookupBid(BOB, 2, id), 'the last generations are kept');
  const count = d.core.auctionState(id)!.bidCount;
  t.match(d.bid(id, ALICE, 5_000, 1), { status: 'rejected', reason: 'bid_too_low', leading: true });
  t.equal(d.core.auctionState(id)!.bidCount, count);
  t.end();
});

t.test('the idempotency table remembers like two generations of maps, and exports exactly', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 40 }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 60 })), {
        maxLength: 400,
        size: 'max',
      }),
      (capacity, keys) => {
        const table = new IdempotencyTable(capacity);
        let newer = new Map<string, number>();
        let older = new Map<string, number>();
        let seq = 0;
        for (const [user, bidId] of keys) {
          const key = `${user}/${bidId}`;
          const expected = newer.get(key) ?? older.get(key);
          const found = table.find(user, bidId);
          if (found >= 0 !== (expected !== undefined)) throw new Error(`find(${key}) disagrees`);
          if (found >= 0) {
            if (table.read(found).seq !== expected) throw new Error(`wrong entry for ${key}`);
            continue;
          }
          table.remember(user, bidId, { auctionKey: 1, price: 1, endsAt: 1, leading: false, seq: ++seq });
          if (newer.size === Math.floor(capacity / 2)) [older, newer] = [newer, new Map<string, number>()];
          newer.set(key, seq);
          table.verify();
        }
        if (table.size !== newer.size + older.size) throw new Error('sizes differ');
        const copy = new IdempotencyTable(capacity);
        copy.import(table.export());
        copy.verify();
        if (JSON.stringify(copy.export()) !== JSON.stringify(table.export()))
          throw new Error('export/import changed the table');
      },
    ),
    { numRuns: 300 },
  );
  t.pass('300 random sequences agreed');
  t.end();
});

t.test('the due heap pops in (time, rank) order through updates and removals', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom('push', 'update', 'remove'), fc.nat(31), fc.integer({ min: 0, max: 50 })), {
        maxLength: 300,
        size: 'max',
      }),
      (ops) => {
        const dueAt = new Float64Array(32);
        const heap = new DueHeap(32, dueAt, 1, (slot) => slot);
        const live = new Set<number>();
        for (const [op, slot, time] of ops) {
          if (op === 'push' && !live.has(slot)) {
            dueAt[slot] = time;
            heap.push(slot);
            live.add(slot);
          }
          if (op === 'update' && live.has(slot)) {
            dueAt[slot] = time;
            heap.update(slot);
          }
          if (op === 'remove' && live.has(slot)) {
            heap.remove(slot);
            live.delete(slot);
          }
          heap.verify();
          const expected = [...live].sort((a, b) => dueAt[a] - dueAt[b] || a - b)[0] ?? -1;
          if (heap.peek() !== expected) throw new Error(`peek ${heap.peek()} expected ${expected}`);
        }
      },
    ),
    { numRuns: 300 },
  );
  t.pass('300 random operation sequences agreed');
  t.end();
});

t.test('snapshots refuse corruption, truncation and a different capacity', (t) => {
  const d = new Driver({ auctionsMax: 64 });
  const id = d.create({ reservePrice: 5_000, startsAt: d.now + 10, endsAt: d.now + 60_000 });
  d.create();
  d.bid(id + 1024, ALICE, 2_000);
  const bytes = encodeSnapshot(d.core);
  const restored = decodeSnapshot(bytes, { auctionsMax: 64 });
  t.equal(restored.stateHash(), d.core.stateHash());
  t.same(restored.auctionState(id), d.core.auctionState(id), 'scheduled auction with reserve restored');
  t.equal(restored.nextDueAt(), d.core.nextDueAt(), 'timers rebuilt');

  const flipped = Uint8Array.from(bytes);
  flipped[flipped.length - 20] ^= 0xff;
  t.throws(() => decodeSnapshot(flipped, { auctionsMax: 64 }), /checksum|msgpack|snapshot/);
  t.throws(() => decodeSnapshot(bytes.subarray(0, bytes.length - 7), { auctionsMax: 64 }), { name: 'InvariantError' });
  t.throws(() => decodeSnapshot(new TextEncoder().encode('not a snapshot'), { auctionsMax: 64 }), {
    name: 'InvariantError',
  });
  t.throws(() => decodeSnapshot(bytes, { auctionsMax: 128 }), /auctionsMax 64, not 128/);
  t.end();
});

t.test('snapshots of a wrapped ring restore every live auction', (t) => {
  const d = new Driver({ auctionsMax: 4 });
  const ids: number[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3; i++) ids.push(d.create({ endsAt: d.now + 1_000 + i }));
    d.bid(ids[ids.length - 1], ALICE, 5_000);
    d.advanceBy(2_000);
  }
  ids.push(d.create({ endsAt: d.now + 5_000 }), d.create({ endsAt: d.now + 6_000 }));
  const restored = decodeSnapshot(encodeSnapshot(d.core), { auctionsMax: 4 });
  restored.verify();
  t.equal(restored.stateHash(), d.core.stateHash());
  for (const id of ids) t.same(restored.auctionState(id), d.core.auctionState(id), `auction ${id}`);
  t.end();
});
