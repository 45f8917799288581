import t from 'tap';
import { EngineProcess, startNats } from '../../testkit/index.js';
import { freePort } from '../../testkit/ports.js';

const metricsOf = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

t.test('--metrics-port: every role transition is counted by edge, and the role each copy has now is 1', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const lease = ['--lease-ttl-ms', '600', '--lease-renew-ms', '100'];
  const primary = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0',
    args: ['--engine-id', 'p', '--metrics-port', String(primaryPort), ...lease],
  });
  t.teardown(() => primary.close());
  const replica = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0',
    role: 'replica',
    args: ['--engine-id', 'r', '--metrics-port', String(replicaPort), ...lease],
  });
  t.teardown(() => replica.close());

  const started = await metricsOf(primaryPort);
  t.match(started, /engine_role_transitions_total\{shard="0",from="starting",to="taking-over"\} 1\n/);
  t.match(started, /engine_role_transitions_total\{shard="0",from="taking-over",to="serving"\} 1\n/);
  t.match(started, /engine_shard_role\{shard="0",role="serving"\} 1\n/);
  t.match(started, /engine_shard_role\{shard="0",role="following"\} 0\n/);
  t.match(await metricsOf(replicaPort), /engine_shard_role\{shard="0",role="following"\} 1\n/);

  const tookOver = replica.waitForRole(0, 'serving');
  await primary.kill();
  const transition = await tookOver;
  t.equal(transition.from, 'taking-over', 'the transition record names the edge');
  const after = await metricsOf(replicaPort);
  t.match(after, /engine_role_transitions_total\{shard="0",from="following",to="taking-over"\} 1\n/);
  t.match(after, /engine_shard_role\{shard="0",role="serving"\} 1\n/);
  t.equal((await fetch(`http://127.0.0.1:${replicaPort}/other`)).status, 404, 'nothing else is served');
});
