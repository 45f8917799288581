import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  EngineClient,
  NOTIFICATIONS_REPUBLISH,
  NOTIFICATIONS_STREAM,
  notificationStreamConfig,
  streamName,
  subjects,
  type BidOutcome,
  type CreateOutcome,
} from '../../protocol/index.js';
import { CLUSTER_BUCKETS, kvStream, USER_FLAGS_BUCKET, USER_FLAGS_REPUBLISH } from '../../protocol/names.js';
import { provisionCluster } from '../../ctl/provision.js';
import { loadConfig } from '../../engine/config.js';
import { shardFollowSettings } from '../../protocol/shard-stream.js';
import { EngineProcess, GatewayProcess, startNats, WsClient } from '../../testkit/index.js';

/**
 * Provisioning (`auctionctl cluster init`, `make up`, the test kit) gives
 * streams and buckets made before gateways followed them without consumers
 * what they now need: direct gets and RePublish. nats-server 2.9 refuses to
 * add RePublish to an existing stream, which the report says; a gateway then
 * follows such a shard log by polling it.
 */

t.test(
  'an older cluster is upgraded where the server allows it, and told what it still lacks; a gateway still follows it',
  async (t) => {
    const nats = await startNats();
    t.teardown(() => nats.close());
    const nc = await connect({ servers: nats.url });
    t.teardown(() => nc.close());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    // As the previous definitions made them: a shard log without direct gets or RePublish,
    // NOTIFICATIONS and the buckets without RePublish.
    const defaults = loadConfig([], {});
    const recorded = {
      shard: 0,
      auctionsMax: defaults.auctionsMax,
      idempotencyEntriesMax: defaults.idempotencyEntriesMax,
    };
    await jsm.streams.add({
      name: streamName(0),
      subjects: [subjects.log(0)],
      num_replicas: 1,
      description: JSON.stringify(recorded),
      duplicate_window: 120_000_000_000,
    });
    const { republish: _, ...olderNotifications } = notificationStreamConfig(1);
    await jsm.streams.add(olderNotifications);
    for (const bucket of CLUSTER_BUCKETS) await new Kvm(js).create(bucket, { history: 1 });

    const report = await provisionCluster(nc, { shardCount: 1 });
    const on29 = nc.info!.version.startsWith('2.9.');
    const log = await jsm.streams.info(streamName(0));
    t.ok(log.config.allow_direct, 'the shard log answers direct gets now');
    t.match(
      report.shards[0],
      { created: false, config: recorded },
      'the shard log is kept, with the configuration it records',
    );
    t.ok(report.shards[0].upgraded.includes('allow_direct'), 'and reported upgraded with direct gets');
    const settled = (
      config: StreamConfig,
      upgrade: { upgraded: string[]; lacking: { setting: string; reason: string }[] },
      what: string,
    ) => {
      if (config.republish) {
        t.ok(upgrade.upgraded.includes('republish'), `${what}: re-publishes now, and the report says so`);
      } else {
        t.same(
          upgrade.lacking.map((l) => l.setting),
          ['republish'],
          `${what}: lacks RePublish, and the report says so`,
        );
        t.match(upgrade.lacking[0].reason, /RePublish/i, `${what}: with the server's reason`);
      }
      if (on29) t.notOk(config.republish, `${what}: nats-server 2.9 cannot add RePublish to an existing stream`);
    };
    settled(log.config, report.shards[0], 'the shard log');
    settled((await jsm.streams.info(NOTIFICATIONS_STREAM)).config, report.streams[0], 'NOTIFICATIONS');
    for (const bucket of report.buckets) {
      const config = (await jsm.streams.info(kvStream(bucket.name))).config;
      t.ok(config.allow_direct, `${bucket.name}: direct gets`);
      if (bucket.name === USER_FLAGS_BUCKET) settled(config, bucket, USER_FLAGS_BUCKET);
      else t.match(bucket, { created: false, upgraded: [], lacking: [] }, `${bucket.name}: had what it needs`);
    }
    const again = await provisionCluster(nc, { shardCount: 1 });
    const all = (r: typeof report) => [r.shards[0], ...r.streams, ...r.buckets];
    t.ok(
      all(again).every((s) => s.upgraded.length === 0),
      'running it again changes nothing',
    );
    t.same(
      all(again).map((s) => s.lacking.map((l) => l.setting)),
      all(report).map((s) => s.lacking.map((l) => l.setting)),
      'and reports the same lacks',
    );

    // A gateway follows the shard log that does not re-publish by polling it: live updates still come.
    const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
    t.teardown(() => engine.close());
    const gateway = await GatewayProcess.start({ natsUrl: nats.url, secret: 'upgrade-test-secret-0123456789' });
    t.teardown(() => gateway.close());
    const engines = new EngineClient(nc, 3_000);
    const created = (await engines.sendOne(0, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
    })) as CreateOutcome;
    const ws = await WsClient.connect(gateway.wsUrl);
    t.teardown(() => ws.socket.close());
    t.match(await ws.request({ type: 'subscribe', auctionIds: [created.auctionId] }), { type: 'ok' });
    const bid = (await engines.bid(created.auctionId, 2, 1, 500)) as BidOutcome;
    t.equal(bid.status, 'accepted');
    t.match(
      await ws.waitFor((m) => m.type === 'auction.state' && m.auctionId === created.auctionId && m.bidCount === 1),
      { price: 100, leaderId: 2 },
      'the bid reaches the watcher',
    );
  },
);

t.test('what provisioning creates has direct gets and RePublish from the start', async (t) => {
  const nats = await startNats({ auth: true, shards: 2 }); // provisioned by the kit
  t.teardown(() => nats.close());
  const nc = await connect(nats.connectOptions('admin'));
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  for (const shard of [0, 1])
    t.match(
      (await jsm.streams.info(streamName(shard))).config,
      shardFollowSettings(shard),
      `${streamName(shard)}: re-publishes to ${subjects.logged(shard)}`,
    );
  t.match((await jsm.streams.info(NOTIFICATIONS_STREAM)).config, {
    allow_direct: true,
    republish: NOTIFICATIONS_REPUBLISH,
  });
  t.match((await jsm.streams.info(kvStream(USER_FLAGS_BUCKET))).config, {
    allow_direct: true,
    republish: USER_FLAGS_REPUBLISH,
  });
  const report = await provisionCluster(nc, { shardCount: 2 });
  t.ok(
    [...report.shards, ...report.streams, ...report.buckets].every(
      (s) => !s.created && s.upgraded.length === 0 && s.lacking.length === 0,
    ),
    'provisioning again finds nothing to create, upgrade or report',
  );
});
