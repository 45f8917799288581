import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type Heartbeat } from '../../engine/cluster.js';
import { HEARTBEAT_SUBJECT } from '../../protocol/names.js';
import { placement } from '../../protocol/placement.js';
import { decode, EngineClient, type BidOutcome, type CreateOutcome } from '../../protocol/index.js';
import { EngineProcess, eventually, startNats } from '../../testkit/index.js';

const SHARDS = 4;
const flags = (id: string) => [
  '--shard-count',
  String(SHARDS),
  '--engine-id',
  id,
  '--heartbeat-ms',
  '150',
  '--engine-expiry-ms',
  '700',
];

/** Resolves once every engine in `want` has announced exactly its shards. */
function awaitPlacement(nc: NatsConnection, want: Map<string, number[]>): Promise<void> {
  const seen = new Map<string, string>();
  const target = (id: string) => JSON.stringify([...(want.get(id) ?? [])].sort((a, b) => a - b));
  return new Promise((resolve) => {
    const sub = nc.subscribe(HEARTBEAT_SUBJECT, {
      callback: (_e, msg) => {
        const beat = decode(msg.data) as Heartbeat;
        seen.set(beat.engineId, JSON.stringify([...beat.shards].sort((a, b) => a - b)));
        if ([...want.keys()].every((id) => seen.get(id) === target(id))) {
          sub.unsubscribe();
          resolve();
        }
      },
    });
  });
}

t.test('engines share shards by rendezvous, hand them over on join, take them back when one dies', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const client = new EngineClient(nc, 3_000);

  const alone = awaitPlacement(nc, placement(SHARDS, ['a']));
  const a = await EngineProcess.start({ natsUrl: nats.url, shards: '', args: flags('a') });
  t.teardown(() => a.close());
  await alone;
  t.pass('a lone engine serves every shard');

  // One auction and one acknowledged bid per shard.
  const bids: { shard: number; auctionId: number; seq: number }[] = [];
  for (let shard = 0; shard < SHARDS; shard++) {
    const created = (await client.sendOne(shard, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
    })) as CreateOutcome;
    const bid = (await client.bid(created.auctionId, 2, 1, 500)) as BidOutcome;
    t.match(bid, { status: 'accepted' });
    bids.push({ shard, auctionId: created.auctionId, seq: bid.seq });
  }

  const both = placement(SHARDS, ['a', 'b']);
  t.ok(both.get('a')!.length > 0 && both.get('b')!.length > 0, 'both engines get shards, so some move');
  const shared = awaitPlacement(nc, both);
  const b = await EngineProcess.start({ natsUrl: nats.url, shards: '', args: flags('b') });
  t.teardown(() => b.close());
  await shared;
  const handedOver = a
    .logLines('handing shard over')
    .map((l) => l.shard)
    .sort();
  t.same(handedOver, both.get('b'), 'a handed over exactly the shards rendezvous gives b');

  for (const { shard, auctionId, seq } of bids) {
    const owner = both.get('a')!.includes(shard) ? 'a' : 'b';
    // The new owner announces a shard as soon as it starts taking it; serving follows its lease and fence.
    const status = await eventually(
      () => client.control<{ engineId: string; status: string }>(shard, { op: 'status' }),
      { timeoutMs: 5_000, intervalMs: 50 },
    );
    t.match(status, { engineId: owner, status: 'serving' }, `shard ${shard} served by ${owner}`);
    t.match(
      await client.bid(auctionId, 2, 1, 500),
      { status: 'accepted', duplicate: true, seq },
      `shard ${shard} kept its history`,
    );
  }

  const back = awaitPlacement(nc, placement(SHARDS, ['a']));
  await b.kill();
  await back;
  // b's leases expire a TTL after its death; until then its shards answer unavailable, which clients retry.
  for (const { auctionId } of bids) {
    const result = await eventually(
      async () => {
        const r = await client.bid(auctionId, 3, 1, 900);
        if (r.status === 'error' && r.code === 'unavailable') throw new Error('unavailable');
        return r;
      },
      { timeoutMs: 5_000, intervalMs: 50 },
    );
    t.match(result, { status: 'accepted', leading: true }, `auction ${auctionId} takes bids after b died`);
  }
});
