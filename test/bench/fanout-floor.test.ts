import t from 'tap';
import { measureFanoutFloor, type FloorResult } from '../../bench/harness/fanout-floor.js';
import { startJob } from '../../bench/harness/worker.js';

/**
 * The fan-out floor of make bench: a bare uWS server in its own process
 * publishes rounds of frames to WebSocket receivers on worker threads;
 * every receiver sees every round, each with a latency from its send time.
 */
t.test('every subscriber receives every round once, with a measured latency', async (t) => {
  const floor = await measureFanoutFloor(30, 4, 50, 2, (port, connections) =>
    startJob<FloorResult>({ kind: 'floor', port, connections }),
  );
  t.equal(floor.expected, 120);
  t.equal(floor.samples, 120, 'no frame lost, none counted twice');
  t.ok(floor.latency.ms(100) > 0, 'latencies measured');
  t.ok(floor.latency.ms(100) < 60_000, 'and plausible (epoch times of two processes on one machine)');
});
