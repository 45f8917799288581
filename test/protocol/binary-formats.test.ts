import t from 'tap';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { AuctionCore } from '../../engine/core/index.js';
import {
  decodeLog,
  encodeLog,
  REASON_CODES,
  type BidOutcome,
  type Command,
  type CommandResult,
  type LogBatch,
  type LogEvent,
} from '../../protocol/index.js';
import { BatchFormatError, BATCH_MAGIC } from '../../protocol/binary/header.js';
import { decodeLogBatch, encodeLogBatch, LOG_HEADER_BYTES } from '../../protocol/binary/log-format.js';
import {
  decodeCommandBatch,
  decodeResultBatch,
  encodeCommandBatch,
  encodeResultBatch,
} from '../../protocol/binary/command-format.js';

/**
 * The binary batches of the internal wire (docs/wire-format.md): every batch
 * reads back as what was written, whatever it holds (fixed records for the
 * common bids, the trailer for the rest), and a reader refuses what it
 * cannot read with a BatchFormatError, never anything else.
 */

const SHARD = 3;

/** Events as the engine decides them: a core fed random creations and bids. */
function decidedEvents(steps: { bidder: number; pick: number; max: number }[]): LogEvent[] {
  const core = new AuctionCore({ shard: SHARD, auctionsMax: 16, idempotencyEntriesMax: 64 });
  const events: LogEvent[] = [];
  let seq = 0;
  const t0 = 1_800_000_000_000;
  const apply = (command: Command, text?: LogEvent['text']) => {
    seq++;
    const event: LogEvent = { seq, command, outcome: core.apply(command, seq, t0 + seq) };
    if (text) event.text = text;
    events.push(event);
    return event;
  };
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const created = apply(
      {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        reservePrice: i * 500,
        startsAt: 0,
        endsAt: t0 + 3_600_000,
        softCloseSeconds: 30,
      },
      { title: `lot ${i}`, description: 'é ☃', imageUrl: 'https://example.com/x.png' },
    );
    ids.push((created.outcome as { auctionId: number }).auctionId);
  }
  steps.forEach((s, i) => {
    apply({ type: 'bid', auctionId: ids[s.pick % ids.length], bidderId: s.bidder, bidId: i + 1, maxBid: s.max });
  });
  apply({ type: 'close', auctionId: ids[0], force: true });
  return events;
}

const amount = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 1, max: 20_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -5, 1.5, Number.NaN, 2 ** 32, 4_294_967_295, 1e300, -0) },
);
const steps = fc.array(fc.record({ bidder: fc.integer({ min: 1, max: 5 }), pick: fc.nat(), max: amount }), {
  maxLength: 60,
});

t.test('log batches of decided events read back exactly, in order', (t) => {
  fc.assert(
    fc.property(steps, fc.boolean(), (s, fence) => {
      const batch: LogBatch = {
        v: 1,
        shard: SHARD,
        writer: 'engine-a/0192',
        t: 1_800_000_000_123.5,
        events: decidedEvents(s),
      };
      if (fence) batch.leader = { engineId: 'engine-a', writer: 'engine-a/0192' };
      const bytes = encodeLog(batch);
      t.equal(bytes[0], BATCH_MAGIC);
      const back = decodeLog(bytes);
      // Object.is-strict (NaN, -0) and key for key: the audit and replicas see what the engine decided.
      t.strictSame(back, batch);
      for (let i = 0; i < batch.events.length; i++)
        if (
          !Object.is(
            (back.events[i].command as { maxBid?: number }).maxBid,
            (batch.events[i].command as { maxBid?: number }).maxBid,
          )
        )
          throw new Error(`maxBid of event ${i} changed`);
    }),
    { numRuns: 150 },
  );
  t.end();
});

t.test('bid events the fixed record cannot hold exactly travel in the trailer unchanged', (t) => {
  const outcome: BidOutcome = {
    type: 'bid',
    status: 'accepted',
    auctionId: 7,
    bidId: 9,
    price: 2 ** 33, // not a u32
    leading: true,
    leaderId: 4,
    outbidUserId: 0,
    endsAt: 5,
    bidCount: 1,
    version: 2,
    reserveMet: false,
    duplicate: false,
    seq: 1,
  };
  const events: LogEvent[] = [
    { seq: 1, command: { type: 'bid', auctionId: 7, bidderId: 4, bidId: 9, maxBid: 2 ** 33 }, outcome },
    {
      seq: 2,
      command: { type: 'bid', auctionId: 7, bidderId: 4, bidId: 10, maxBid: 600 },
      outcome: { ...outcome, seq: 2, bidId: 10, price: 600 },
    },
    {
      seq: 3,
      command: { type: 'bid', auctionId: 7, bidderId: 4, bidId: 11, maxBid: 700 },
      outcome: { ...outcome, seq: 99, bidId: 11, price: 700 },
    },
  ];
  const batch: LogBatch = { v: 1, shard: 0, writer: 'w', t: 1, events };
  const bytes = encodeLogBatch(batch);
  t.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(20, true), 1, 'only the regular bid is a record');
  t.strictSame(decodeLogBatch(bytes), batch);
  t.end();
});

t.test('msgpack batches written before the binary format are still read', (t) => {
  const legacy = new Packr({ useRecords: true, moreTypes: false });
  const batch: LogBatch = {
    v: 1,
    shard: SHARD,
    writer: 'old',
    t: 42,
    events: decidedEvents([{ bidder: 2, pick: 0, max: 900 }]),
  };
  t.strictSame(decodeLog(legacy.pack(batch)), batch);
  t.end();
});

const bidCommand = fc.record({
  type: fc.constant('bid'),
  auctionId: fc.double(),
  bidderId: fc.double(),
  bidId: fc.double(),
  maxBid: fc.double(),
});

t.test('command batches carry bids as records and anything else as it was sent', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 4, arbitrary: bidCommand }, { weight: 1, arbitrary: fc.anything() }), {
        maxLength: 40,
      }),
      (commands) => {
        const back = decodeCommandBatch(encodeCommandBatch(commands));
        t.equal(back.length, commands.length);
        // msgpack turns undefined into null; the records keep NaN and -0.
        const expected = new Packr({ useRecords: false, moreTypes: false }).unpack(
          new Packr({ useRecords: false, moreTypes: false }).pack(commands),
        ) as unknown[];
        back.forEach((c, i) => {
          if (Object.is(c, expected[i])) return;
          t.strictSame(c, expected[i], `command ${i}`);
        });
      },
    ),
    { numRuns: 200 },
  );
  t.end();
});

const bidResult: fc.Arbitrary<CommandResult> = fc
  .record({
    status: fc.constantFrom('accepted' as const, 'rejected' as const),
    reason: fc.option(fc.constantFrom(...REASON_CODES), { nil: undefined }),
    auctionId: fc.integer({ min: 1, max: 2 ** 40 }),
    bidId: fc.integer({ min: 1, max: 2 ** 50 }),
    price: fc.nat({ max: 2 ** 32 - 1 }),
    leading: fc.boolean(),
    leaderId: fc.nat({ max: 2 ** 32 - 1 }),
    outbidUserId: fc.nat({ max: 2 ** 32 - 1 }),
    endsAt: fc.integer({ min: 0, max: 2 ** 45 }),
    bidCount: fc.nat({ max: 2 ** 32 - 1 }),
    version: fc.nat({ max: 2 ** 32 - 1 }),
    reserveMet: fc.boolean(),
    duplicate: fc.boolean(),
    seq: fc.integer({ min: 1, max: 2 ** 50 }),
  })
  .map((r) => {
    const { reason, status, ...rest } = r;
    // Key order as the engine writes it: type, status, reason (when set), then the rest.
    return reason === undefined ? { type: 'bid', status, ...rest } : { type: 'bid', status, reason, ...rest };
  });

const otherResult: fc.Arbitrary<CommandResult> = fc.oneof(
  fc.record({ status: fc.constant('error' as const), code: fc.constantFrom(...REASON_CODES), message: fc.string() }),
  fc.record({
    type: fc.constant('create' as const),
    status: fc.constant('accepted' as const),
    auctionId: fc.nat(),
    seq: fc.nat(),
  }),
);

t.test('result batches read back exactly, with an error for the whole request when there is one', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 4, arbitrary: bidResult }, { weight: 1, arbitrary: otherResult }), { maxLength: 40 }),
      fc.option(
        fc.record({
          status: fc.constant('error' as const),
          code: fc.constant('unavailable' as const),
          message: fc.string(),
        }),
        { nil: undefined },
      ),
      (results, error) => {
        const reply = error === undefined ? { results } : { results, error };
        const back = decodeResultBatch(encodeResultBatch(reply));
        t.same(back, reply);
        back.results.forEach((r, i) => {
          if (Object.keys(r).join() !== Object.keys(results[i]).join()) throw new Error(`keys of result ${i} differ`);
        });
      },
    ),
    { numRuns: 200 },
  );
  // The engine's queue time rides in the trailer; a reader drops a value that is not a time.
  t.same(decodeResultBatch(encodeResultBatch({ results: [], queuedMs: 12.5 })), { results: [], queuedMs: 12.5 });
  t.same(decodeResultBatch(encodeResultBatch({ results: [], queuedMs: -1 })), { results: [] });
  t.same(decodeResultBatch(encodeResultBatch({ results: [] })), { results: [] }, 'absent: absent');
  t.end();
});

t.test('readers refuse an unknown version, another kind, truncation and forged counts with a clear error', (t) => {
  const log = encodeLogBatch({
    v: 1,
    shard: 1,
    writer: 'w',
    t: 1,
    events: decidedEvents([{ bidder: 2, pick: 0, max: 900 }]),
  });
  const v2 = log.slice();
  v2[2] = 2;
  t.throws(() => decodeLog(v2), { name: 'BatchFormatError', message: /version 2: this reader knows version 1/ });
  t.throws(() => decodeCommandBatch(log), {
    name: 'BatchFormatError',
    message: /expected a commands batch, got kind 1/,
  });
  t.throws(() => decodeLog(log.subarray(0, log.length - 3)), { name: 'BatchFormatError', message: /expected/ });
  t.throws(() => decodeLog(log.subarray(0, 10)), {
    name: 'BatchFormatError',
    message: /shorter than its 40-byte header/,
  });
  const forged = log.slice();
  new DataView(forged.buffer).setUint32(16, 0xffffffff, true);
  t.throws(() => decodeLog(forged), { name: 'BatchFormatError', message: /more than/ });
  const badIndex = log.slice();
  new DataView(badIndex.buffer).setUint32(LOG_HEADER_BYTES + 68, 77, true);
  t.throws(() => decodeLog(badIndex), {
    name: 'BatchFormatError',
    message: /no event, or more than one, at index 3 of 5/,
  });
  t.end();
});

t.test('random bytes behind a valid header only ever fail as BatchFormatError', (t) => {
  const headers = [
    encodeLogBatch({ v: 1, shard: 1, writer: 'w', t: 1, events: [] }).subarray(0, LOG_HEADER_BYTES),
    encodeCommandBatch([]).subarray(0, 16),
    encodeResultBatch({ results: [] }).subarray(0, 16),
  ];
  const readers = [decodeLogBatch, decodeCommandBatch, decodeResultBatch];
  fc.assert(
    fc.property(
      fc.nat({ max: 2 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 12 }),
      (k, tail, patch) => {
        const bytes = new Uint8Array(headers[k].length + tail.length);
        bytes.set(headers[k]);
        bytes.set(tail, headers[k].length);
        bytes.set(patch.subarray(0, Math.max(0, headers[k].length - 4)), 4); // keep magic, kind and version
        try {
          readers[k](bytes);
        } catch (error) {
          if (!(error instanceof BatchFormatError)) throw error;
        }
      },
    ),
    { numRuns: 500 },
  );
  t.pass('500 forged batches, no other error');
  t.end();
});
