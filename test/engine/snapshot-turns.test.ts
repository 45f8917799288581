import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { EngineClient } from '../../protocol/index.js';
import { SnapshotTurns } from '../../shard/snapshot-turns.js';
import { EngineProcess, eventually, startNats } from '../../testkit/index.js';

t.test('one turn per spacing, to the waiting shard whose last snapshot is oldest', (t) => {
  const turns = new SnapshotTurns(1_000, 3_000);
  t.equal(turns.take(0, 5_000, 100), true, 'the only asker');
  t.equal(turns.take(1, 5_000, 200), false, 'another shard in the same instant');
  t.equal(turns.take(2, 5_500, 50), false, 'within the spacing, though its snapshot is older');
  t.equal(turns.take(1, 6_000, 200), false, 'a spacing later: shard 2 waits with an older snapshot');
  t.equal(turns.take(2, 6_100, 50), true, 'shard 2 then');
  t.equal(turns.take(0, 7_100, 5_000), false, 'shard 0 again, but 1 has waited with an older one');
  t.equal(turns.take(1, 7_200, 200), true);
  // Shard 3 asks once and stops (it stopped serving): it is forgotten, not waited for.
  t.equal(turns.take(3, 7_300, 10), false);
  t.equal(turns.take(0, 8_300, 5_000), false, 'shard 3 still counts within its stale time');
  t.equal(turns.take(0, 10_400, 5_000), true, 'past it, shard 0 goes');
  t.end();
});

/**
 * Every shard of a process comes due for its periodic snapshot in the same
 * second; their images were taken back to back on one event loop, long
 * enough at 10M auctions for every lease of the process to lapse (make
 * bench-scale). Four shards of one engine, snapshots due every 200 ms while
 * auctions are created on all four: the snapshots begin at least a second
 * apart.
 */
t.test("one engine's shards begin their periodic snapshots a second apart, not together", async (t) => {
  const nats = await startNats({ shards: 4 });
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0-3',
    args: ['--snapshot-every-ms', '200'],
  });
  t.teardown(() => engine.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const client = new EngineClient(nc, 5_000);
  const starts = () =>
    engine.log
      .split('\n')
      .filter((line) => line.includes('"snapshot written"'))
      .map((line) => JSON.parse(line) as { time: number; ms: number; shard: number })
      .map((s) => ({ shard: s.shard, startedAt: s.time - s.ms }))
      .sort((a, b) => a.startedAt - b.startedAt);
  let lot = 0;
  await eventually(
    async () => {
      // Something new on every shard, so each stays due.
      for (let shard = 0; shard < 4; shard++)
        await client.sendOne(shard, {
          type: 'create',
          sellerId: 1,
          startingPrice: 100,
          endsAt: Date.now() + 3_600_000,
          title: `lot ${lot++}`,
        });
      const shards = new Set(starts().map((s) => s.shard));
      if (shards.size < 4) throw new Error(`snapshots of shards ${[...shards].join(', ')} so far`);
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
  const all = starts();
  const gaps = all.slice(1).map((s, i) => s.startedAt - all[i].startedAt);
  // The log's times are milliseconds, its `ms` rounded: a few ms of slack.
  t.ok(
    gaps.every((gap) => gap >= 990),
    `${all.length} snapshots began ${gaps.join(', ')} ms apart`,
  );
});
