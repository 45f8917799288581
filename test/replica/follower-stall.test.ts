import t from 'tap';
import { SnapshotTurns } from '../../shard/snapshot-turns.js';
import { pino } from 'pino';
import { Follower, STALLED_CONSUMER_MS, type FollowerEvent } from '../../replica/follower.js';
import type { ShardLease } from '../../replica/lease.js';
import type { CopyState } from '../../shard/copy-state.js';
import type { LogBatch } from '../../protocol/index.js';
import type { ShardLogPort } from '../../shard/ports.js';
import { manualClock, settle } from '../../testkit/manual-clock.js';

/**
 * make bench-scale found ordered consumers that stop delivering for good
 * without an error or an end: the standby stayed at the messages it had,
 * reporting no lag. A follower whose consumer delivers nothing for
 * STALLED_CONSUMER_MS while the lease's holder says the log is ahead reports
 * itself dead (its copy opens a new consumer from its position); one at the
 * log's end waits quietly however long nothing happens.
 */
function setUp(holderStreamSeq: () => number) {
  const clock = manualClock();
  const state = {
    durableStreamSeq: 0,
    eventsSinceSnapshot: 0,
    snapshotWriting: null,
    lag: null,
    applyLogged(streamSeq: number) {
      state.durableStreamSeq = streamSeq;
    },
  };
  let stopped = 0;
  const log = {
    follow: () =>
      Promise.resolve({
        // Two batches, then nothing ever again (and no end).
        messages: (async function* () {
          for (const streamSeq of [1, 2])
            yield { streamSeq, batch: { t: 0, events: [] } as unknown as LogBatch, pending: 0 };
          await new Promise(() => undefined);
        })(),
        stop: () => {
          stopped++;
          return Promise.resolve();
        },
      }),
  } as unknown as ShardLogPort;
  const events: FollowerEvent[] = [];
  const follower = new Follower(
    state as unknown as CopyState,
    log,
    {
      expired: () => false,
      get holder() {
        return { engineId: 'p', writer: 'w', renewedAt: 0, streamSeq: holderStreamSeq() };
      },
    } as unknown as ShardLease,
    clock,
    pino({ level: 'silent' }),
    { renewMs: 200, snapshotEveryEvents: 1_000_000, verify: false, snapshotTurns: new SnapshotTurns() },
    (event) => events.push(event),
  );
  return { clock, state, follower, events, stopped: () => stopped };
}

t.test('a consumer stalled behind the log is given up after STALLED_CONSUMER_MS', async (t) => {
  const { clock, state, follower, events, stopped } = setUp(() => 10);
  follower.start();
  await settle();
  t.equal(state.durableStreamSeq, 2, 'the consumer delivered what it had');
  clock.advance(STALLED_CONSUMER_MS - 100);
  t.same(events, [], 'not before STALLED_CONSUMER_MS');
  clock.advance(200);
  t.equal(events.length, 1, 'then the follower reports itself dead, once');
  t.equal(events[0].kind, 'follower-died');
  t.match(
    String((events[0] as { error: Error }).error.message),
    /delivered nothing for \d+ ms while the log is at stream message 10 and the copy at 2/,
  );
  t.equal(stopped(), 1, 'and stops the stalled consumer');
  clock.advance(STALLED_CONSUMER_MS * 3);
  t.equal(events.length, 1, 'nothing more from this follower');
});

t.test('a follower at the log end waits quietly, and its wait counts from when the log moved on', async (t) => {
  let logAt = 2;
  const { clock, follower, events } = setUp(() => logAt);
  follower.start();
  await settle();
  clock.advance(STALLED_CONSUMER_MS * 4);
  t.same(events, [], 'no new messages is not a stall');
  logAt = 3;
  clock.advance(STALLED_CONSUMER_MS - 100);
  t.same(events, [], 'the wait starts when the log is ahead, not at the last delivery');
  clock.advance(200);
  t.equal(events[0]?.kind, 'follower-died', 'a consumer that never delivers the new message is given up');
});
