import t from 'tap';
import { LoopSaturation, SHED_SHARE_MAX } from '../../gateway/saturation.js';

/**
 * The gateway's own saturation (gateway/saturation.ts), on a clock the test
 * drives: each sample is the lateness of a timer due every 10 ms. Late
 * samples raise the share of bids shed at the frame a step at a time, up to
 * SHED_SHARE_MAX and never to 1; on-time ones lower it back to exactly 0.
 */
function driven(lagTargetMs = 50) {
  let now = 0;
  const shares: number[] = [];
  const s = new LoopSaturation({
    lagTargetMs,
    sampleEveryMs: 10,
    now: () => now,
    onShareChange: (x) => shares.push(x),
  });
  s.start();
  s.stop(); // the timer is the test's: `sample` is called by hand
  /** The next sample comes `lateMs` after it was due. */
  const sample = (lateMs: number) => {
    now += 10 + lateMs;
    s.sample();
  };
  return { s, sample, shares };
}

t.test('an event loop on time sheds nothing', (t) => {
  const { s, sample, shares } = driven();
  for (let i = 0; i < 100; i++) sample(i % 2 === 0 ? 0 : 49);
  t.equal(s.share, 0);
  t.notOk(
    s.shouldShed(() => 0),
    'not even the luckiest draw',
  );
  t.same(shares, [], 'the metric never moved');
  t.end();
});

t.test('late samples raise the share a step each, to its ceiling; samples on time bring it back to 0', (t) => {
  const { s, sample, shares } = driven();
  sample(120);
  t.equal(s.share, 0.05, 'one late sample: one step');
  t.equal(s.lagMs, 120, 'the lag is the lateness of the last sample');
  for (let i = 0; i < 100; i++) sample(80);
  t.equal(s.share, SHED_SHARE_MAX, 'held at the ceiling');
  t.ok(SHED_SHARE_MAX < 1, 'some bids always pass');
  t.ok(
    s.shouldShed(() => 0.5),
    'a draw under the share is shed',
  );
  t.notOk(
    s.shouldShed(() => 0.95),
    'one over it passes',
  );
  for (let i = 0; i < 44; i++) sample(0);
  t.equal(s.share, 0.02, 'it falls more slowly than it rose');
  sample(0);
  t.equal(s.share, 0, 'and back to exactly 0');
  t.equal(shares.at(-1), 0, 'the metric saw it');
  t.ok(
    shares.every((x, i) => i === 0 || x !== shares[i - 1]),
    'the metric hears of changes only',
  );
  t.equal(shares.filter((x) => x === SHED_SHARE_MAX).length, 1, 'the ceiling reached once, not once per sample');
  t.end();
});

t.test('retryAfterMs follows the lag, spread, within 50 ms - 2 s', (t) => {
  const { s, sample } = driven();
  sample(0);
  t.equal(
    s.retryAfterMs(() => 0.5),
    50,
    'on time: about the target',
  );
  sample(400);
  t.equal(
    s.retryAfterMs(() => 0),
    200,
    'half the lag at the earliest',
  );
  t.equal(
    s.retryAfterMs(() => 0.999),
    600,
    'one and a half at the latest',
  );
  sample(10_000);
  t.equal(
    s.retryAfterMs(() => 0.5),
    2_000,
  );
  t.end();
});

t.test('a target of 0 turns it off: no timer, nothing shed', (t) => {
  const s = new LoopSaturation({ lagTargetMs: 0 });
  s.start();
  t.notOk(s.shouldShed(() => 0));
  s.stop();
  t.end();
});
