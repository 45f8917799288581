import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { roleConnectOptions } from '../../protocol/cluster.js';
import { SILENT_MS, watchForSilentServer } from '../../service/nats-watchdog.js';
import { startNatsCluster } from '../../testkit/index.js';

const logger = pino({ level: 'silent' });

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
  const stopWatching = watchForSilentServer(nc, logger);
  t.teardown(stopWatching);
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
      `answered through the other node within ${BOUND_MS} ms (silent for ${SILENT_MS} ms: left)`,
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

t.test('a process busy for seconds at a time, while messages keep coming, stays on its server', async (t) => {
  const cluster = await startNatsCluster(2);
  t.teardown(() => cluster.close());
  const [node] = cluster.nodes;
  const publisher = await connect({ servers: node.url });
  t.teardown(() => publisher.close());
  const nc = await connect({ servers: cluster.servers, ...roleConnectOptions('gateway', {}) });
  t.teardown(() => nc.close());
  const server = nc.getServer();
  const stopWatching = watchForSilentServer(nc, logger);
  t.teardown(stopWatching);
  const changes: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'disconnect' || s.type === 'forceReconnect') changes.push(s.type);
  })();
  let received = 0;
  nc.subscribe('firehose', {
    callback: () => {
      received++;
    },
  });
  await nc.flush();
  const payload = new Uint8Array(1_024);
  const pump = setInterval(() => {
    for (let i = 0; i < 200; i++) publisher.publish('firehose', payload);
  }, 5);
  t.teardown(() => clearInterval(pump));
  for (let round = 0; round < 3; round++) {
    // Blocked longer than SILENT_MS: nothing is read meanwhile, and the watchdog's tick comes late (a watchdog
    // that judged it would find nothing read for 2 s and leave a healthy server).
    const until = performance.now() + SILENT_MS + 500;
    while (performance.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  clearInterval(pump);
  t.ok(received > 0, `messages kept coming (${received})`);
  t.same(changes, [], 'never left its server');
  t.equal(nc.getServer(), server);
});
