import t from 'tap';
import fc from 'fast-check';
import { AuctionCore, encodeImage } from '../../../engine/core/index.js';
import { sortPairs } from '../../../engine/core/image-capture.js';
import { replay } from './driver.js';
import { config, run, SHARD, step } from './random-streams.js';

/**
 * A capture taken in steps while the core goes on deciding must be exactly
 * the image at the sequence it began: chunks of 1 to 8 records (so copies on
 * write, windows wrapping the ring and chunks split at the window's first slot
 * are common), idempotency tables of 4 or 64 entries (so rotations reuse a
 * generation the export has not copied yet), steps of random sizes between
 * random commands.
 */
t.test('a capture in steps is the image at the sequence where it began, whatever the core does meanwhile', (t) => {
  let interleaved = 0;
  fc.assert(
    fc.property(
      fc.array(step, { minLength: 1, maxLength: 250, size: 'max' }),
      config,
      fc.nat(),
      fc.integer({ min: 0, max: 3 }),
      fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 40 }),
      (steps, cfg, cut, chunkShift, budgets) => {
        const whole = run(steps, cfg, false);
        const at = cut % (whole.log.length + 1);
        const core = replay(
          whole.log.slice(0, at),
          new AuctionCore({ shard: SHARD, auctionsMax: cfg.auctionsMax, idempotencyEntriesMax: cfg.rememberMax }),
        );
        const expected = encodeImage(core.image());
        const capture = core.beginImage(chunkShift);
        let next = 0;
        for (const { seq, t: time, command } of whole.log.slice(at)) {
          if (!capture.done) capture.step(budgets[next++ % budgets.length]);
          core.apply(command, seq, time);
          interleaved++;
        }
        while (!capture.step(budgets[next++ % budgets.length] + 1));
        const image = capture.image();
        if (image.lastSeq !== at) throw new Error(`captured at ${image.lastSeq}, began at ${at}`);
        if (Buffer.compare(encodeImage(image), expected) !== 0) throw new Error(`capture at ${at} differs`);
        core.verify();
        core.beginImage().end(); // the finished capture let go: another may begin
      },
    ),
    { numRuns: 300 },
  );
  t.ok(interleaved > 5_000, `${interleaved} commands decided while captures were being taken`);
  t.end();
});

t.test('one capture at a time; an ended one stops following the core', (t) => {
  const core = new AuctionCore({ shard: SHARD, auctionsMax: 8, idempotencyEntriesMax: 4 });
  core.apply(
    {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      reservePrice: 0,
      startsAt: 0,
      endsAt: 10_000,
      softCloseSeconds: 0,
    },
    1,
    1_000,
  );
  const capture = core.beginImage(0);
  t.throws(() => core.beginImage(), /already being taken/);
  t.ok(core.image(), 'an image at once may still be taken beside it');
  capture.end();
  t.throws(() => capture.image(), /before its capture was complete/, 'an ended capture has no image');
  const again = core.beginImage();
  t.equal(again.step(Infinity), true);
  t.equal(again.image().lastSeq, 1);
  t.end();
});

t.test('side-table pairs come out in auction-number order', (t) => {
  t.same(Array.from(sortPairs(new Float64Array([9, 90, 3, 30, 7, 70]))), [3, 30, 7, 70, 9, 90]);
  t.same(Array.from(sortPairs(new Float64Array([]))), []);
  t.end();
});
