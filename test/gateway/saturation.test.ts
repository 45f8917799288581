import t from 'tap';
import { FALL_PER_SEC, LoopSaturation, SHED_SHARE_MAX, STEP_UP } from '../../gateway/saturation.js';

/**
 * The gateway's own saturation (gateway/saturation.ts), on a clock the test
 * drives: each sample is the lateness of a timer due every 10 ms. Each late
 * sample raises the share of bids shed at the frame by a step, up to
 * SHED_SHARE_MAX and never to 1; time on schedule lowers it at FALL_PER_SEC,
 * back to exactly 0.
 */
function driven(lagTargetMs = 50) {
  let now = 1_000;
  const shares: number[] = [];
  const s = new LoopSaturation({
    lagTargetMs,
    sampleEveryMs: 10,
    now: () => now,
    onShareChange: (x) => shares.push(x),
  });
  /** The next sample comes `lateMs` after it was due. */
  const sample = (lateMs: number) => {
    now += 10 + lateMs;
    s.sample();
  };
  return { s, sample, shares, now: () => now };
}

t.test('an event loop on time, or late by no more than the target, sheds nothing', (t) => {
  const { s, sample, shares } = driven();
  for (let i = 0; i < 100; i++) sample(i % 2 === 0 ? 0 : 50);
  t.equal(s.share, 0);
  t.notOk(
    s.shouldShed(() => 0),
    'not even the luckiest draw',
  );
  t.same(shares, [], 'the metric never moved');
  t.end();
});

t.test('a lone late turn (a GC pause) sheds nothing', (t) => {
  const { s, sample, shares } = driven();
  for (let i = 0; i < 20; i++) {
    sample(i % 4 === 0 ? 2_000 : 0);
    t.equal(s.share, 0);
  }
  t.same(shares, []);
  t.end();
});

t.test(
  'each late sample after another raises the share a step, to its ceiling; time on schedule brings it back to 0',
  (t) => {
    const { s, sample, shares } = driven();
    sample(5_000);
    t.equal(s.share, 0, 'one late turn alone: not yet');
    t.equal(s.lagMs, 5_000, 'the lag is the lateness of the last sample');
    sample(5_000);
    t.equal(s.share, STEP_UP, 'a second one: one step, however long');
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
    // 0.9 at 0.5 per second: 1.8 s on schedule, 180 samples 10 ms apart.
    for (let i = 0; i < 100; i++) sample(0);
    t.equal(s.share, SHED_SHARE_MAX - FALL_PER_SEC * 1.0, 'one second on schedule takes FALL_PER_SEC away');
    for (let i = 0; i < 79; i++) sample(0);
    t.ok(s.share > 0 && s.share <= 0.01, `still shedding a little just before 1.8 s (${s.share})`);
    sample(0);
    t.equal(s.share, 0, 'and nothing after it: exactly 0');
    t.equal(shares.at(-1), 0, 'the metric saw it');
    t.ok(
      shares.every((x, i) => i === 0 || x !== shares[i - 1]),
      'the metric hears of changes only',
    );
    t.equal(shares.filter((x) => x === SHED_SHARE_MAX).length, 1, 'the ceiling reached once, not once per sample');
    t.end();
  },
);

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

t.test('lateWithin: the part of a span the loop spent late, as the last sample saw it', (t) => {
  const { s, sample, now } = driven();
  sample(300); // late from now-300 to now
  const end = now();
  t.equal(s.lateWithin(end - 1_000, end), 300, 'a round trip spanning the whole lag');
  t.equal(s.lateWithin(end - 100, end), 100, 'one that left during it');
  t.equal(s.lateWithin(end - 1_000, end - 200), 100, 'one answered during it');
  t.equal(s.lateWithin(end, end + 50), 0, 'one that left after it');
  t.end();
});

t.test('a target of 0 samples nothing and sheds nothing', async (t) => {
  let reads = 0;
  const s = new LoopSaturation({ lagTargetMs: 0, sampleEveryMs: 1, now: () => (reads++, 0) });
  const before = reads;
  s.start();
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(reads, before, 'no timer read the clock');
  t.notOk(s.shouldShed(() => 0));
  s.stop();
});

t.test('stopped from within a sample, it samples no more', async (t) => {
  let samples = 0;
  const s: LoopSaturation = new LoopSaturation({
    lagTargetMs: 1,
    sampleEveryMs: 1,
    now: () => {
      samples++;
      return samples * 1_000; // every sample very late: the share changes, and the callback stops it
    },
    onShareChange: () => s.stop(),
  });
  s.start();
  await new Promise((resolve) => setTimeout(resolve, 30));
  const seen = samples;
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(samples, seen, 'no sample after the stop');
  t.equal(s.share, STEP_UP, 'stopped at the first change');
});
