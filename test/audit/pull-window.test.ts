import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { decode, encode, EngineClient, type CreateOutcome } from '../../protocol/index.js';
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
