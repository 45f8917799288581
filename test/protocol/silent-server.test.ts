import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { MAX_PINGS_OUT, PING_INTERVAL_MS, roleConnectOptions } from '../../protocol/cluster.js';
import { startNatsCluster } from '../../testkit/index.js';

/**
 * A NATS node that stops answering but keeps its connections open (SIGSTOP:
 * a stalled VM, a long pause) is left by every process for another node,
 * while it is still stopped: `roleConnectOptions` sends PINGs, gives the
 * connection up once MAX_PINGS_OUT go unanswered, and gives up a connection
 * attempt that gets no greeting. With nats.js's defaults every request below
 * times out for as long as the node is stopped (a PING every 2 minutes).
 */
t.test('a process leaves a NATS node that went silent, for another one, while it is still silent', async (t) => {
  const cluster = await startNatsCluster(2);
  t.teardown(() => cluster.close());
  const [silent, other] = cluster.nodes;
  const responder = await connect({ servers: other.url });
  t.teardown(() => responder.close());
  responder.subscribe('echo', { callback: (_error, msg) => void msg.respond(msg.data) });
  await responder.flush();
  // The process under test, on the node about to stop (first in its list, no shuffling).
  const nc = await connect({
    servers: [silent.url, other.url],
    noRandomize: true,
    ...roleConnectOptions('gateway', {}),
  });
  t.teardown(() => nc.close());
  t.equal(nc.getServer(), `127.0.0.1:${silent.port}`, 'connected to the node that will stop');
  t.equal((await nc.request('echo', 'before', { timeout: 5_000 })).string(), 'before', 'routed to the responder');

  const pid = silent.pid!;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    if (silent.isRunning) process.kill(pid, 'SIGCONT');
  });
  // Every attempt times out while the process still talks to the stopped node; once it has left it, one is answered.
  let answer: string | null = null;
  for (let attempt = 0; attempt < 60 && answer === null; attempt++) {
    answer = await nc
      .request('echo', 'during', { timeout: 500 })
      .then((m) => m.string())
      .catch(() => null);
  }
  t.equal(
    answer,
    'during',
    `answered through the other node (PINGs every ${PING_INTERVAL_MS} ms, ${MAX_PINGS_OUT} out)`,
  );
  t.equal(nc.getServer(), `127.0.0.1:${other.port}`, 'now connected to the other node');
  process.kill(pid, 'SIGCONT');
});
