import t from 'tap';
import pino from 'pino';
import { AuctionCore, type CoreImage } from '../../engine/core/index.js';
import { CopyState, SnapshotAbandonedError, SNAPSHOT_STEP_BYTES } from '../../shard/copy-state.js';
import type { ShardLogPort, SnapshotMeta, SnapshotPort } from '../../shard/ports.js';
import { manualClock, settle } from '../../testkit/manual-clock.js';

/**
 * A primary begins a snapshot between two batches with appends still in
 * flight, and goes on deciding while the image is copied: the file may only
 * be written once every event in it is durable, and must be given up when that
 * may never happen. These drive the copy's state as the primary does (decide
 * on the core, markDurable on the log's acknowledgement).
 */
const config = { auctionsMax: 200_000, idempotencyEntriesMax: 1 << 10 };
const SHARD = 3;

class RecordingSnapshots implements SnapshotPort {
  readonly saved: { image: CoreImage; meta: SnapshotMeta }[] = [];
  save(image: CoreImage, meta: SnapshotMeta): Promise<SnapshotMeta> {
    this.saved.push({ image, meta });
    return Promise.resolve(meta);
  }
  loadNewest(): null {
    return null;
  }
}

/** The log is never asked for anything by these paths; any call fails the test. */
const noLog = new Proxy({} as ShardLogPort, {
  get: (_, name) => () => {
    throw new Error(`the log was asked for ${String(name)}`);
  },
});

function copyWithAuctions(count: number): { state: CopyState; snapshots: RecordingSnapshots; create: () => void } {
  const snapshots = new RecordingSnapshots();
  const state = new CopyState(SHARD, config, noLog, snapshots, manualClock(), pino({ level: 'silent' }));
  state.core = new AuctionCore({ shard: SHARD, ...config });
  const create = () =>
    state.core.apply(
      {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        reservePrice: 0,
        startsAt: 0,
        endsAt: 10_000_000,
        softCloseSeconds: 0,
      },
      state.core.lastSeq + 1,
      1_000,
    );
  for (let i = 0; i < count; i++) create();
  state.expectStreamSeq = 1;
  state.markDurable(1, state.core.lastSeq);
  state.eventsSinceSnapshot = count; // as the primary counts acknowledged events
  return { state, snapshots, create };
}

/** Lets the capture's steps (one per `soon`) and the writes run. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

t.test('a snapshot begun with appends in flight is written once they are durable, with their events', async (t) => {
  // 160k records = 5 MiB: the capture takes several steps.
  const { state, snapshots, create } = copyWithAuctions(160_000);
  t.ok(160_000 * 32 > 2 * SNAPSHOT_STEP_BYTES);
  create(); // decided, its append in flight
  state.expectStreamSeq = 2;
  const inFlight = state.core.lastSeq;
  const outcomes: unknown[] = [];
  state.takeSnapshot((outcome) => outcomes.push(outcome));
  create(); // decided while the capture is copied: not in this snapshot
  state.expectStreamSeq = 3;
  await turns(20);
  t.equal(snapshots.saved.length, 0, 'nothing written while an event in it may not be in the log');
  state.markDurable(2, inFlight);
  await turns(3);
  t.equal(snapshots.saved.length, 1, 'written once its events are durable');
  const [{ image, meta }] = snapshots.saved;
  t.same(meta, { lastSeq: inFlight, streamSeq: 2 });
  t.equal(image.lastSeq, inFlight);
  t.equal(image.nextNumber - image.firstNumber, 160_001, 'the auction created after it began is not in it');
  t.match(outcomes, [{ snapshot: { lastSeq: inFlight, streamSeq: 2 }, stallMs: Number }]);
  t.equal(state.snapshotWriting, null);
});

t.test('a primary that stops with the appends in flight gives the snapshot up: nothing is written', async (t) => {
  const { state, snapshots, create } = copyWithAuctions(1_000);
  create();
  state.expectStreamSeq = 2;
  const outcomes: unknown[] = [];
  state.takeSnapshot((outcome) => outcomes.push(outcome));
  await turns(5);
  state.abandonUndurableSnapshot('the primary stopped serving with appends in flight');
  await turns(5);
  t.equal(snapshots.saved.length, 0);
  t.ok((outcomes[0] as { error?: Error }).error instanceof SnapshotAbandonedError, 'the caller hears it was given up');
  t.equal(state.eventsSinceSnapshot, 1_000, 'its events are due for the next snapshot');
  t.equal(state.snapshotWriting, null);
  // The core took no harm: a new snapshot begins and completes.
  state.markDurable(2, state.core.lastSeq);
  state.takeSnapshot();
  await turns(5);
  t.equal(snapshots.saved.length, 1);
});

t.test('a snapshot whose events are all durable is not given up when the copy rebuilds or stops', async (t) => {
  const { state, snapshots } = copyWithAuctions(100_000);
  state.takeSnapshot();
  state.abandonUndurableSnapshot('the copy rebuilds from the log');
  await turns(10);
  t.equal(snapshots.saved.length, 1, 'a true state of the log is still written');
  t.equal(snapshots.saved[0].image.nextNumber - snapshots.saved[0].image.firstNumber, 100_000);
});
