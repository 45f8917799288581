import t from 'tap';
import { SnapshotTurns } from '../../shard/snapshot-turns.js';
import { pino } from 'pino';
import { DISPOSE_WAIT_MS, Follower } from '../../replica/follower.js';
import type { ShardLease } from '../../replica/lease.js';
import type { CopyState } from '../../shard/copy-state.js';
import type { Clock, ShardLogPort } from '../../shard/ports.js';

/**
 * A follower's consumer that cannot open (nats.js recreating an ordered
 * consumer on a stream with no leader: the call just does not return) must
 * not hold its copy in `following`: the copy changes roles only once the
 * follower is disposed, and every later event waits behind that. make chaos
 * (seeds 103 and 105) saw copies silent for a minute while their shard had
 * no primary. Disposing gives up waiting after DISPOSE_WAIT_MS of the copy's
 * clock.
 */
t.test('disposing a follower whose consumer never opens ends after DISPOSE_WAIT_MS', async (t) => {
  const timers: { at: number; fn: () => void }[] = [];
  let now = 0;
  const clock = {
    now: () => now,
    after: (ms: number, fn: () => void) => {
      const timer = { at: now + ms, fn };
      timers.push(timer);
      return () => void timers.splice(timers.indexOf(timer) >>> 0, 1);
    },
    every: () => () => undefined,
    soon: (fn: () => void) => queueMicrotask(fn),
    sleep: () => Promise.resolve(),
  } as unknown as Clock;
  let opens = 0;
  const log = {
    follow: () => {
      opens++;
      return new Promise(() => undefined); // never opens, never fails
    },
  } as unknown as ShardLogPort;
  const follower = new Follower(
    { durableStreamSeq: 0 } as unknown as CopyState,
    log,
    { expired: () => false } as unknown as ShardLease,
    clock,
    pino({ level: 'silent' }),
    { renewMs: 200, snapshotEveryEvents: 1_000_000, verify: false, snapshotTurns: new SnapshotTurns() },
    () => undefined,
  );
  follower.start();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(opens, 1, 'the follower is opening its consumer');
  let disposed = false;
  const disposing = follower.dispose().then(() => (disposed = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(disposed, 'it waits for the consumer first');
  now += DISPOSE_WAIT_MS;
  for (const timer of timers.filter((x) => x.at <= now)) timer.fn();
  await disposing;
  t.ok(disposed, 'and gives up after DISPOSE_WAIT_MS: the copy may change roles');
});
