import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { EngineClient } from '../../protocol/index.js';
import {
  BidLoad,
  EngineProcess,
  eventually,
  openAuctions,
  replayShard,
  startNatsCluster,
} from '../../testkit/index.js';

t.test(
  'an engine on a 3-node JetStream cluster survives SIGKILL of the stream leader: nothing acknowledged lost',
  async (t) => {
    const cluster = await startNatsCluster(3);
    t.teardown(() => cluster.close());
    const urls = cluster.servers.join(',');
    const engine = await EngineProcess.start({
      natsUrl: urls,
      shards: '0',
      args: [
        '--engine-id',
        'p',
        '--stream-replicas',
        '3',
        '--append-timeout-ms',
        '1000',
        '--lease-ttl-ms',
        '3000',
        '--lease-renew-ms',
        '500',
      ],
    });
    t.teardown(() => engine.close());
    const nc = await connect({ servers: cluster.servers });
    t.teardown(() => nc.close());
    const client = new EngineClient(nc, 3_000);
    const auctions = await openAuctions(client, 0, 5);

    const load = new BidLoad(nc, 0, auctions, 3_000);
    load.start(4);
    await load.untilAnswered(300);
    const info = await (await jetstreamManager(nc)).streams.info('AUCTION_LOG_0');
    const leader = cluster.nodes.find((n) => n.name === info.cluster?.leader)!;
    t.ok(leader, `the stream leader is ${info.cluster?.leader}`);
    await leader.kill();
    // A new stream leader is elected among the two survivors; the engine resyncs and serves again.
    await load.untilAnswered(300).catch((error: Error) => {
      throw new Error(`${error.message}; engine log:\n${engine.log.slice(-6_000)}`);
    });
    await load.stop();
    t.comment(`outages seen by clients (ms): ${load.outagesMs.join(', ')}`);

    // Right after an election the cluster may still time out a request; reading is safe to retry.
    const { acceptedBids, core } = await eventually(() => replayShard(nc, 0), { timeoutMs: 30_000, intervalMs: 200 });
    const missing = load.acked.filter((b) => !acceptedBids.get(`${b.bidderId}/${b.bidId}`)?.includes(b.seq));
    t.equal(missing.length, 0, `all ${load.acked.length} acknowledged bids are in the stream`);
    t.same(load.acceptedTwice(), [], 'no bid id accepted with two sequence numbers');
    const live = await eventually(
      async () => {
        const h = await client.control<{ stateHash: string; lastSeq: number }>(0, { op: 'hash' });
        if (h.lastSeq !== core.lastSeq) throw new Error(`engine at ${h.lastSeq}, stream at ${core.lastSeq}`);
        return h;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    t.equal(live.stateHash, core.stateHash(), 'the engine equals a replay of the stream');
  },
);
