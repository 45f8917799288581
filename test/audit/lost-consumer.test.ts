import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_CONSUMER, decode, encode, EngineClient, streamName, type CreateOutcome } from '../../protocol/index.js';
import { AuditProcess, EngineProcess, eventually, replayShard, startNats } from '../../testkit/index.js';

/**
 * A durable consumer gone from under a running audit (lost with a NATS node,
 * or deleted by hand): nats.js answers "consumer not found" by asking again
 * forever, and the audit stood still for the rest of the run while its
 * stream went on (make chaos, seeds 203, 205, 206). The audit must see that
 * its pull delivers nothing while the stream is ahead of its file, and
 * create the consumer again right after the file's position.
 */
t.test('the audit consumer deleted under a running audit: the audit creates it again and catches up', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0', args: ['--stall-check-ms', '300'] });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const client = new EngineClient(nc, 5_000);
  const position = async () =>
    (
      decode((await nc.request('auction.audit.0', encode({ op: 'position' }), { timeout: 3_000 })).data) as {
        eventSeq: number;
      }
    ).eventSeq;
  const create = async (title: string) => {
    const r = (await client.sendOne(0, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
      title,
    })) as CreateOutcome;
    t.equal(r.status, 'accepted', `${title} created`);
  };
  const caughtUp = async (what: string) => {
    const { core } = await replayShard(nc, 0);
    await eventually(
      async () => {
        const at = await position();
        if (at !== core.lastSeq) throw new Error(`${what}: audit at ${at}, stream at ${core.lastSeq}`);
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  };

  await create('before');
  await caughtUp('before the consumer is lost');
  await jsm.consumers.delete(streamName(0), AUDIT_CONSUMER);
  for (let i = 0; i < 5; i++) await create(`after ${i}`);
  await caughtUp('after the consumer was lost');
  const info = await jsm.consumers.info(streamName(0), AUDIT_CONSUMER);
  t.equal(info.config.durable_name, AUDIT_CONSUMER, 'the audit created its consumer again');
  t.match(audit.log, /recreating it/, 'the audit said why it created the consumer again');
});
