import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { shardFile } from '../../audit/shard-db.js';
import { verifyOnWorker } from '../../audit/verify-worker.js';
import { decode, encode, EngineClient, type CreateOutcome } from '../../protocol/index.js';
import { adminSubjects, auditSubject } from '../../protocol/names.js';
import type { VerifyResult } from '../../protocol/operations.js';
import { AuditProcess, BidLoad, EngineProcess, eventually, replayShard, startNats } from '../../testkit/index.js';

/**
 * An operator's verification of a running audit's file runs on a worker
 * thread of its own (audit/verify-worker.ts), with its own NATS connection:
 * it gives the same answer as the command line's, and the running audit
 * answers it over the admin subject the same way.
 */
t.test('a verification on a worker thread proves the file, and names what is missing', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const client = new EngineClient(nc, 3_000);
  const created = (await client.sendOne(0, {
    type: 'create',
    sellerId: 1,
    startingPrice: 100,
    endsAt: Date.now() + 3_600_000,
    title: 'brass lamp',
  })) as CreateOutcome;
  const load = new BidLoad(nc, 0, [created.auctionId]);
  load.start(2);
  await load.untilAnswered(100);
  await load.stop();
  const { core } = await replayShard(nc, 0);
  await eventually(
    async () => {
      const position = decode((await nc.request(auditSubject(0), encode({ op: 'position' }))).data) as {
        eventSeq: number;
      };
      if (position.eventSeq !== core.lastSeq) throw new Error(`audit at ${position.eventSeq} of ${core.lastSeq}`);
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );

  const onWorker = await verifyOnWorker(nats.url, 0, shardFile(audit.dataDir, 0));
  t.match(onWorker, { shard: 0, ok: true, lastSeq: core.lastSeq, events: core.lastSeq });
  const cli = await audit.verify();
  t.equal(cli.code, 0, cli.output);
  t.match(cli.output, `${core.lastSeq} events to seq ${core.lastSeq}`, 'the command line says the same');

  const asked = decode(
    (await nc.request(adminSubjects.audit(0), encode({ op: 'verify' }), { timeout: 10_000 })).data,
  ) as VerifyResult;
  t.match(asked, { ok: true, lastSeq: core.lastSeq, runningHash: onWorker.runningHash }, 'and the running audit');

  const missing = await verifyOnWorker(nats.url, 0, `${audit.dataDir}/none.db`);
  t.match(missing, { ok: false, difference: /^no file / });
});
