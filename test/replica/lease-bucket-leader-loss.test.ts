import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { EngineClient } from '../../protocol/index.js';
import { kvStream, LEASE_BUCKET, streamName } from '../../protocol/names.js';
import {
  BidLoad,
  EngineProcess,
  eventually,
  openAuctions,
  replayShard,
  startNatsCluster,
} from '../../testkit/index.js';

const LEASE_STREAM = kvStream(LEASE_BUCKET);

async function leaderOf(jsm: JetStreamManager, stream: string): Promise<string | undefined> {
  return (await jsm.streams.info(stream)).cluster?.leader;
}

/** Asks the stream's leader to step down until `wanted` accepts the leader elected (a stepdown elects at once). */
async function placeLeader(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  wanted: (leader: string) => boolean,
): Promise<string> {
  for (let attempt = 1; attempt <= 12; attempt++) {
    const leader = await eventually(
      async () => {
        const l = await leaderOf(jsm, stream);
        if (!l) throw new Error(`${stream} has no leader`);
        return l;
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    if (wanted(leader)) return leader;
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5_000 });
    await eventually(
      async () => {
        const l = await leaderOf(jsm, stream);
        if (!l || l === leader) throw new Error(`${stream} still led by ${leader}`);
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  }
  throw new Error(`could not place the leader of ${stream}`);
}

t.test(
  'the lease bucket losing its leader on a 3-node cluster: the primary serves on its log, the replica takes nothing',
  async (t) => {
    // --no_advertise: the engines keep to the one node they are given, which is never the one killed.
    const cluster = await startNatsCluster(3, ['--no_advertise']);
    t.teardown(() => cluster.close());
    const home = cluster.nodes[0];
    const engineArgs = (id: string) => ['--engine-id', id, '--stream-replicas', '3'];
    const primary = await EngineProcess.start({ natsUrl: home.url, shards: '0', args: engineArgs('p') });
    t.teardown(() => primary.close());
    const replica = await EngineProcess.start({
      role: 'replica',
      natsUrl: home.url,
      shards: '0',
      args: engineArgs('r'),
    });
    t.teardown(() => replica.close());
    await replica.waitForRole(0, 'following', 0);

    const nc = await connect({ servers: home.url });
    t.teardown(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const bucketLeader = await placeLeader(nc, jsm, LEASE_STREAM, (l) => l !== home.name);
    const logLeader = await placeLeader(nc, jsm, streamName(0), (l) => l !== bucketLeader);
    t.comment(`lease bucket led by ${bucketLeader}, shard log by ${logLeader}, engines on ${home.name}`);

    const auctions = await openAuctions(new EngineClient(nc, 3_000), 0, 4);
    const load = new BidLoad(nc, 0, auctions, 3_000);
    load.start(4);
    await load.untilAnswered(200);
    const primaryFrom = primary.outputPosition;
    const replicaFrom = replica.outputPosition;

    // Answered counts as the bucket's election goes on (nats-server 2.9 waits 4-9 s before electing).
    const progress: { at: number; answered: number }[] = [];
    const sampler = setInterval(() => progress.push({ at: Date.now(), answered: load.answered }), 50);
    t.teardown(() => clearInterval(sampler));
    const killedAt = Date.now();
    await cluster.nodes.find((n) => n.name === bucketLeader)!.kill();
    await eventually(
      async () => {
        const l = await leaderOf(jsm, LEASE_STREAM).catch(() => undefined);
        if (!l || l === bucketLeader) throw new Error('the lease bucket has no leader yet');
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    t.comment(`the lease bucket had a leader again ${Date.now() - killedAt} ms after the kill`);
    await primary.waitForLine((l) => l.includes('"lease renewed again"'), primaryFrom, 10_000, 'the renewal after');
    clearInterval(sampler);
    await load.untilAnswered(200);
    await load.stop();

    // Between the primary's word that its TTL passed without a renewal and its next renewal, it went on deciding.
    const timeOf = (msg: string) => primary.logLines(msg).find((l) => (l.time as number) >= killedAt)?.time as number;
    const lapsedAt = timeOf('lease not renewed within its ttl; serving on, the log still takes our appends');
    const renewedAt = timeOf('lease renewed again');
    t.ok(lapsedAt > 0 && renewedAt > lapsedAt, 'the primary served on past its TTL, then renewed');
    const answeredBy = (at: number) => progress.filter((p) => p.at <= at).at(-1)?.answered ?? 0;
    const decidedWhileLapsed = answeredBy(renewedAt) - answeredBy(lapsedAt + 50);
    t.ok(
      decidedWhileLapsed > 0,
      `bids decided while its lease had lapsed (${renewedAt - lapsedAt} ms): ${decidedWhileLapsed}`,
    );
    const roles = (engine: EngineProcess, from: number) =>
      engine.log
        .slice(from)
        .split('\n')
        .filter((l) => l.includes('"msg":"role"'))
        .map((l) => (JSON.parse(l) as { to: string }).to);
    t.same(roles(primary, primaryFrom), [], 'the primary never changed roles');
    t.notOk(roles(replica, replicaFrom).includes('serving'), 'the replica never served');
    t.same(load.outagesMs, [], 'no client was answered unavailable');

    const { acceptedBids } = await eventually(() => replayShard(nc, 0), { timeoutMs: 30_000, intervalMs: 200 });
    const missing = load.acked.filter((b) => !acceptedBids.get(`${b.bidderId}/${b.bidId}`)?.includes(b.seq));
    t.equal(missing.length, 0, `all ${load.acked.length} acknowledged bids are in the stream`);
    t.same(load.acceptedTwice(), [], 'no bid id accepted with two sequence numbers');
  },
);
