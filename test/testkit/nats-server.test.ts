import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { eventually, startNats, startNatsCluster } from '../../testkit/index.js';
import { natsAuthorization } from '../../protocol/permissions.js';

t.test('a single JetStream server: append with a chained expected sequence, fenced on a stale one', async (t) => {
  const server = await startNats();
  t.teardown(() => server.close());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'smoke', subjects: ['smoke.>'] });
  const js = jetstream(nc);

  const first = await js.publish('smoke.a', 'one', { expect: { lastSequence: 0 } });
  const second = await js.publish('smoke.a', 'two', { expect: { lastSequence: first.seq } });
  t.equal(second.seq, 2, 'chained appends land in order');

  // A writer still believing the stream ends at seq 1 has been deposed.
  const stale = await js.publish('smoke.a', 'late', { expect: { lastSequence: 1 } }).catch((e: unknown) => e);
  t.ok(stale instanceof JetStreamApiError, 'a stale expectation is refused');
  t.equal((stale as JetStreamApiError).code, JetStreamApiCodes.StreamWrongLastSequence);
  t.equal((await jsm.streams.info('smoke')).state.messages, 2, 'nothing landed after the fence');
});

t.test('the data survives SIGKILL and restart of a single server', async (t) => {
  const server = await startNats();
  t.teardown(() => server.close());
  let nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'durable', subjects: ['durable.>'] });
  const ack = await jetstream(nc).publish('durable.x', 'kept');
  await nc.close();

  const pidBefore = server.pid;
  await server.kill();
  t.notOk(server.isRunning, 'SIGKILL stopped the process');
  await server.launch();
  t.not(server.pid, pidBefore, 'a new process serves the same port and store');

  nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const message = await (await jetstreamManager(nc)).streams.getMessage('durable', { seq: ack.seq });
  t.equal(message?.string(), 'kept', 'the acknowledged message is still there');
});

t.test('SIGSTOP freezes a server and SIGCONT wakes it', async (t) => {
  const server = await startNats();
  t.teardown(() => server.close());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  await server.pause();
  const frozen = await nc.request('nobody.home', '', { timeout: 300 }).catch((e: Error) => e);
  t.ok(frozen instanceof Error, 'a paused server answers nothing');
  await server.resume();
  await nc.flush();
  t.pass('the connection works again after SIGCONT');
});

t.test('a 3-node cluster keeps an R3 stream writable when one node is SIGKILLed', async (t) => {
  const cluster = await startNatsCluster(3);
  t.teardown(() => cluster.close());
  const nc = await connect({ servers: cluster.servers });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'r3', subjects: ['r3.>'], num_replicas: 3 });
  const js = jetstream(nc);
  const before = await js.publish('r3.a', 'before');

  const info = await jsm.streams.info('r3');
  const leader = cluster.nodes.find((n) => n.name === info.cluster?.leader);
  t.ok(leader, 'the stream has a leader among our nodes');
  await leader!.kill();

  // Until a new stream leader is elected a publish finds no responder.
  const after = await eventually(() =>
    js.publish('r3.a', 'after', { expect: { lastSequence: before.seq }, timeout: 1000 }),
  );
  t.equal(after.seq, before.seq + 1, 'the surviving majority accepts the next append');
  t.equal(cluster.servers.length, 2, 'with two of three nodes running');
});

t.test(
  'with users per role: replies travel over _INBOX without the server tracking response permissions',
  async (t) => {
    // allow_responses made nats-server remember every delivered reply subject and rescan them: CPU grew under steady load.
    t.notMatch(natsAuthorization({ admin: 'a', engine: 'e', audit: 'u', gateway: 'g' }, 1), /allow_responses/);
    const server = await startNats({ auth: true });
    t.teardown(() => server.close());
    const engine = await connect(server.connectOptions('engine'));
    const gateway = await connect(server.connectOptions('gateway'));
    t.teardown(() => Promise.all([engine.close(), gateway.close()]).then(() => undefined));
    const sub = engine.subscribe('auction.cmd.0', {
      callback: (_error, msg) => void msg.respond(`echo ${msg.string()}`),
    });
    await engine.flush();
    for (let i = 0; i < 3; i++)
      t.equal(
        (await gateway.request('auction.cmd.0', `bid ${i}`, { timeout: 2_000 })).string(),
        `echo bid ${i}`,
        'the engine answers the gateway',
      );
    sub.unsubscribe();
    // The gateway still may not reach an operator subject.
    const denied = await gateway.request('auction.admin.engine.0', 'close', { timeout: 1_000 }).then(
      () => 'answered',
      (error: Error) => error.message,
    );
    t.not(denied, 'answered', 'publishing an operator subject is refused');
  },
);
