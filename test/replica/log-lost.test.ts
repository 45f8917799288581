import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { decode, encode, EngineClient } from '../../protocol/index.js';
import type { LeaseValue } from '../../protocol/cluster.js';
import { adminSubjects, LEASE_BUCKET, streamName } from '../../protocol/names.js';
import { EngineProcess, eventually, openAuctions, startNats } from '../../testkit/index.js';

const LOST = 'the shard log lost acknowledged messages; this copy stops and will not serve the shard';

/** `n` bids on `auction`, each from a new bidder over the last: every one accepted, and logged. */
async function acceptedBids(client: EngineClient, auction: number, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    const result = await client.bid(auction, 100 + i, i, 1_000 * i);
    if (result.status !== 'accepted') throw new Error(`bid ${i}: ${JSON.stringify(result)}`);
  }
}

/** The shard's stream loses its messages: deleted, then made again empty by the next engine to start (no users). */
async function loseTheLog(nc: NatsConnection): Promise<void> {
  await (await jetstreamManager(nc)).streams.delete(streamName(0));
}

async function streamLastSeq(nc: NatsConnection): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(streamName(0))).state.last_seq;
}

t.test('a primary whose log lost messages its snapshot holds stops the shard instead of serving it', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0', args: ['--engine-id', 'p'] });
  t.teardown(() => engine.close());
  const client = new EngineClient(nc, 3_000);
  const [auction] = await openAuctions(client, 0, 1);
  await acceptedBids(client, auction, 10);
  const reply = decode(
    (await nc.request(adminSubjects.engine(0), encode({ op: 'snapshot' }), { timeout: 10_000 })).data,
  ) as { snapshot?: { streamSeq: number } };
  t.ok(reply.snapshot && reply.snapshot.streamSeq > 10, 'a snapshot holds the bids');

  await engine.kill();
  await loseTheLog(nc);
  const from = engine.outputPosition;
  await engine.restart();
  await engine.waitForLine((l) => l.includes(LOST), from, 20_000, 'the loss found');
  const result = await client.bid(auction, 2, 99, 10_000);
  t.match(result, { status: 'error', code: 'unavailable' }, 'a bid finds nobody serving the shard');
  t.equal(await streamLastSeq(nc), 0, 'nothing was decided on the shortened log');
  t.ok(engine.isRunning, 'the process lives on (for its other shards)');
});

t.test('a new replica finds the loss from the lease its last holder wrote, and does not take over', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const primary = await EngineProcess.start({ natsUrl: nats.url, shards: '0', args: ['--engine-id', 'p'] });
  t.teardown(() => primary.close());
  const client = new EngineClient(nc, 3_000);
  const [auction] = await openAuctions(client, 0, 1);
  await acceptedBids(client, auction, 10);

  // Renewed every 200 ms, the lease comes to name the position the bids reached.
  const durable = await streamLastSeq(nc);
  const leases = await new Kvm(jetstream(nc)).open(LEASE_BUCKET);
  await eventually(
    async () => {
      const value = decode((await leases.get('shard.0'))!.value) as LeaseValue;
      if ((value.streamSeq ?? 0) < durable) throw new Error(`the lease names ${value.streamSeq}, not ${durable}`);
    },
    { timeoutMs: 5_000, intervalMs: 50 },
  );
  await primary.kill(); // its lease still names it, with the stream message it had durable
  await loseTheLog(nc);
  const replica = await EngineProcess.start({
    role: 'replica',
    natsUrl: nats.url,
    shards: '0',
    args: ['--engine-id', 'r'],
  });
  t.teardown(() => replica.close());
  await replica.waitForLine((l) => l.includes(LOST), 0, 20_000, 'the loss found');
  const result = await client.bid(auction, 2, 99, 10_000);
  t.match(result, { status: 'error', code: 'unavailable' }, 'a bid finds nobody serving the shard');
  t.equal(await streamLastSeq(nc), 0, 'no fence, nothing decided on the emptied log');
});
