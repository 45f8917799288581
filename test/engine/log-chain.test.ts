import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { ShardLog } from '../../shard/nats-log.js';
import { encodeLog, type LogBatch } from '../../protocol/index.js';
import { DeposedError, logMsgId } from '../../shard/ports.js';
import { startNats } from '../../testkit/index.js';

const batch = (writer: string, leader = false): Uint8Array =>
  encodeLog({
    v: 1,
    shard: 0,
    writer,
    t: 1,
    events: [],
    ...(leader ? { leader: { engineId: writer, writer } } : {}),
  } satisfies LogBatch);

// On a real nats-server: the hazard of pipelined appends the simulator found (seed 3908), and the chain that closes it.
t.test("a pipelined append after another writer's fence is refused when it names the message it follows", async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const log = new ShardLog(nc, jetstream(nc), await jetstreamManager(nc), 0);
  await log.ensure({ shard: 0, auctionsMax: 8, idempotencyEntriesMax: 8 }, 1);

  // The old primary A: its fence at 1, a batch at 2; it has two more in flight, expecting 2 and 3.
  t.equal((await log.append(batch('A', true), 0, 'A', 2_000)).seq, 1);
  t.equal((await log.append(batch('A'), 1, 'A', 2_000, logMsgId(0, 1, 'A'))).seq, 2);
  // The new primary B fences after catching up to 2: its fence takes position 3.
  t.equal((await log.append(batch('B', true), 2, 'B', 2_000)).seq, 3, "B's fence lands at 3");

  // A's append expecting 2 is refused by the sequence...
  await t.rejects(log.append(batch('A'), 2, 'A', 2_000, logMsgId(0, 3, 'A')), DeposedError);
  // ...and the next one, expecting 3 (B's fence, by position), by the message it names: A's batch that never landed.
  await t.rejects(
    log.append(batch('A'), 3, 'A', 2_000, logMsgId(0, 3, 'A')),
    DeposedError,
    "refused: the last message is B's fence, not A's",
  );
  t.equal(await log.lastStreamSeq(), 3, 'nothing of A after the fence');

  // Without the chain the same append lands after the fence: two writers (what the chain prevents).
  t.equal(
    (await log.append(batch('A'), 3, 'A', 2_000)).seq,
    4,
    'an append expecting only a position lands after the fence',
  );
  // B's own next append names its fence and would land; here A's message 4 is in the way, so it is refused.
  await t.rejects(log.append(batch('B'), 3, 'B', 2_000, logMsgId(0, 3, 'B')), DeposedError);
  t.equal(
    (await log.append(batch('B'), 4, 'B', 2_000, logMsgId(0, 4, 'A'))).seq,
    5,
    'chaining onto the real last message works',
  );
});
