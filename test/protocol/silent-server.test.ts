import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { MAX_PINGS_OUT, PING_INTERVAL_MS, roleConnectOptions } from '../../protocol/cluster.js';
import { startNatsCluster } from '../../testkit/index.js';

/**
 * A NATS node that stops answering but keeps its connections open (SIGSTOP:
 * a stalled VM, a long pause) is left by every process for another node,
 * while it is still stopped: `roleConnectOptions` sends PINGs and gives the
 * connection up once MAX_PINGS_OUT go unanswered, and gives up a connection
 * attempt that gets no greeting. With nats.js's defaults every request below
 * times out for as long as the node is stopped (a PING every 2 minutes), and
 * a first connection to the stopped node waits 20 s before trying the next.
 * The bounds here (10 s) are far above what the settings give (about 2 s)
 * and far below what the defaults give.
 */
const BOUND_MS = 10_000;

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
  try {
    // Every attempt times out while the process still talks to the stopped node; once it has left it, one is answered.
    let answer: string | null = null;
    for (let attempt = 0; attempt < BOUND_MS / 500 && answer === null; attempt++) {
      answer = await nc
        .request('echo', 'during', { timeout: 500 })
        .then((m) => m.string())
        .catch(() => null);
    }
    t.equal(
      answer,
      'during',
      `answered through the other node within ${BOUND_MS} ms (PINGs every ${PING_INTERVAL_MS} ms, ${MAX_PINGS_OUT} out)`,
    );
    t.equal(nc.getServer(), `127.0.0.1:${other.port}`, 'now connected to the other node');

    // A process starting now, the stopped node first in its list: it moves on to the next one.
    const started = performance.now();
    const late = await connect({
      servers: [silent.url, other.url],
      noRandomize: true,
      ...roleConnectOptions('gateway', {}),
    });
    const tookMs = performance.now() - started;
    t.teardown(() => late.close());
    t.equal(late.getServer(), `127.0.0.1:${other.port}`, 'a new connection skips the stopped node');
    t.ok(tookMs < BOUND_MS, `connected in ${Math.round(tookMs)} ms, not after the 20 s default`);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
});
