import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_CONSUMER, decode, encode, EngineClient, streamName, type CreateOutcome } from '../../protocol/index.js';
import { AuditProcess, EngineProcess, eventually, replayShard, startNats } from '../../testkit/index.js';

/**
 * The audit's pull window must never stall. A byte-limited pull (nats.js
 * `consume({max_bytes})`) ends at the server with a 409 "Message Size
 * Exceeds MaxBytes" when the next message does not fit what is left of it;
 * nats-server 2.9 does not say how much was left, so nats.js keeps counting
 * those bytes as pending, stops topping the pull up once they pass its
 * threshold, and waits for two missed idle heartbeats (30 s) before pulling
 * again. Under load the audit stood still for half a minute at a time (make
 * bench: no CPU through whole steps). Here every log batch (a creation with
 * a long description) is more than half of the 16 KiB pull window a 4 KiB
 * chunk gives: each pull takes one batch and leaves the rest unused, and the
 * audit must still write every batch soon after it is appended.
 */
t.test('log batches larger than what is left of a pull: the audit keeps up with every one', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0', args: ['--chunk-bytes-max', '4096'] });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const client = new EngineClient(nc, 5_000);
  const position = async () =>
    (
      decode((await nc.request('auction.audit.0', encode({ op: 'position' }), { timeout: 3_000 })).data) as {
        eventSeq: number;
      }
    ).eventSeq;

  for (let i = 0; i < 40; i++) {
    const r = (await client.sendOne(0, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
      title: `lot ${i}`,
      description: 'd'.repeat(9_000 + (i % 4) * 300),
    })) as CreateOutcome;
    t.equal(r.status, 'accepted');
    const { core } = await replayShard(nc, 0);
    // Each batch is written long before a stalled pull would be resumed by missed heartbeats (30 s).
    await eventually(
      async () => {
        const at = await position();
        if (at !== core.lastSeq) throw new Error(`batch ${i}: audit at ${at}, stream at ${core.lastSeq}`);
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
  }
});

/**
 * One audit process follows many shards on one connection, and nats-server
 * cuts a client owed more than 64 MB: each shard's share of the pull window
 * shrinks with their number (audit/shard-audit.ts pullMessagesFor). With the
 * audit stopped, the server delivers each shard's window and no more: 4 batches
 * of 8 shards, where 32 a shard let make bench-scale's creation batches reach
 * ~50 MB and the audit was cut five times.
 */
t.test('an audit of 8 shards has 4-5 log batches of each delivered ahead of it, not 32', async (t) => {
  const nats = await startNats({ shards: 8 });
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0-7' });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0-7' });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const client = new EngineClient(nc, 5_000);
  await audit.signal('SIGSTOP');
  t.teardown(() => audit.signal('SIGCONT'));
  const create = (shard: number, i: number) =>
    client.sendOne(shard, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
      title: `lot ${i}`,
    });
  // One request at a time: each creation is a log batch of its own.
  for (let i = 0; i < 12; i++) for (let shard = 0; shard < 8; shard++) await create(shard, i);
  const unacknowledged = async () =>
    Promise.all(
      Array.from(
        { length: 8 },
        async (_, shard) => (await jsm.consumers.info(streamName(shard), AUDIT_CONSUMER)).num_ack_pending,
      ),
    );
  await eventually(
    async () => {
      const pending = await unacknowledged();
      if (pending.some((n) => n < 4)) throw new Error(`delivered ahead: ${pending.join(', ')}`);
    },
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  // The window, plus the top-up nats.js asks for once a quarter of it has arrived.
  const pending = await unacknowledged();
  t.ok(
    pending.every((n) => n >= 4 && n <= 5),
    `each shard: its window of 4 (5 with the top-up), though 12 batches wait: ${pending.join(', ')}`,
  );
  await audit.signal('SIGCONT');
  const position = async (shard: number) =>
    (
      decode((await nc.request(`auction.audit.${shard}`, encode({ op: 'position' }), { timeout: 3_000 })).data) as {
        streamSeq: number;
      }
    ).streamSeq;
  await eventually(
    async () => {
      for (let shard = 0; shard < 8; shard++) {
        const last = (await jsm.streams.info(streamName(shard))).state.last_seq;
        if ((await position(shard)) !== last) throw new Error(`shard ${shard} not written yet`);
      }
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
  t.pass('resumed, every shard written to its stream end');
});
