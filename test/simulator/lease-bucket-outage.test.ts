import t from 'tap';
import { simulate } from '../../testkit/simulator/simulate.js';

/**
 * The lease bucket's stream electing a leader (a NATS node's loss) takes no
 * lease writes for seconds while the shard's log still takes appends. The
 * primary serves on its log's acknowledgements and the standbys, whose own
 * writes fail too, judge nobody: on the code before, the primary stopped a
 * TTL into the outage and the shard went unserved until it ended. When the
 * log's leader is lost with it, the primary resyncs and keeps its lease
 * (it decides nothing meanwhile), and serves again once both are back.
 */
t.test('the lease bucket taking no writes for 2-6 s deposes nobody: the primary serves on its log', async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const result = await simulate(seed, { kinds: ['lease-bucket-outage'] });
    const { takeovers, depositions, longestSilenceMs } = result.stats;
    const trace = `${result.failures.join('\n')}\n${result.trace.join('\n')}`;
    t.same(result.failures, [], `seed ${seed}: every invariant held${trace}`);
    t.equal(takeovers, 1, `seed ${seed}: the one takeover is the start's\n${trace}`);
    t.equal(depositions, 0, `seed ${seed}: nobody deposed`);
    t.ok(
      longestSilenceMs < 1_000,
      `seed ${seed}: clients never went unserved for a lease TTL (${longestSilenceMs} ms)`,
    );
  }
});

t.test(
  'the log and the bucket taking no writes together: the primary keeps its lease through its resync',
  async (t) => {
    for (let seed = 1; seed <= 20; seed++) {
      const result = await simulate(seed, { kinds: ['leaders-lost'] });
      const { takeovers, depositions } = result.stats;
      const trace = `${result.failures.join('\n')}\n${result.trace.join('\n')}`;
      t.same(result.failures, [], `seed ${seed}: every invariant held, service within the bound after each${trace}`);
      t.equal(takeovers, 1, `seed ${seed}: the one takeover is the start's\n${trace}`);
      t.equal(depositions, 0, `seed ${seed}: nobody deposed\n${trace}`);
    }
  },
);
