import t from 'tap';
import { EDGES, ROLES } from '../../shard/roles.js';
import { simOptions } from '../../testkit/simulator/options.js';
import { Runner } from '../../testkit/simulator/simulate.js';
import { World } from '../../testkit/simulator/world.js';

/**
 * The roles of a copy, seen through the transitions it reports, on the
 * simulator's in-memory log and lease (no fault injected): which edges a
 * start, a stop and a takeover take, and that a stopped copy moves no more.
 */
function world(copies = 2) {
  const w = new World(simOptions(7, { copies }));
  return { w, run: new Runner(w) };
}

const path = (w: World, copy: string) => w.transitions.filter((x) => x.copy === copy).map((x) => `${x.from}->${x.to}`);

t.test(
  'a start: the first copy takes the free lease and serves, the other follows; every edge reported is in the table',
  async (t) => {
    const { w, run } = world();
    for (const slot of w.slots) w.boot(slot);
    t.ok(
      await run.until(
        w.scheduler.now + 2_000,
        () => w.serving().length === 1 && w.slots[1].copy?.roleName === 'following',
      ),
      'one serves, one follows',
    );
    t.same(path(w, 'c0'), ['starting->taking-over', 'taking-over->serving']);
    t.same(path(w, 'c1'), ['starting->following']);
    for (const x of w.transitions) t.ok(EDGES[x.from].includes(x.to), `${x.from} -> ${x.to} is an edge of the table`);
    t.same(w.checker.failures, []);
  },
);

t.test(
  'a stop hands over at once: the primary releases the lease, the follower takes over without waiting for the TTL',
  async (t) => {
    const { w, run } = world();
    for (const slot of w.slots) w.boot(slot);
    await run.until(
      w.scheduler.now + 2_000,
      () => w.serving().length === 1 && w.slots[1].copy?.roleName === 'following',
    );
    const stoppedAt = w.scheduler.now;
    let stopped = false;
    void w.removeCopy(w.slots[0], 'test').then(() => (stopped = true));
    t.ok(
      await run.until(w.scheduler.now + 5_000, () => stopped && w.slots[1].copy?.roleName === 'serving'),
      'c1 serves after c0 stopped',
    );
    t.same(path(w, 'c0').at(-1), 'serving->stopped');
    t.same(path(w, 'c1'), ['starting->following', 'following->taking-over', 'taking-over->serving']);
    const servedAt = w.transitions.find((x) => x.copy === 'c1' && x.to === 'serving')!.at;
    t.ok(
      servedAt - stoppedAt < w.options.leaseTtlMs,
      `c1 served ${servedAt - stoppedAt} ms after the stop, within the lease TTL (${w.options.leaseTtlMs} ms): the lease was released`,
    );
    t.same(w.checker.failures, []);
  },
);

t.test('a stopped copy refuses every edge: a second stop changes nothing, nothing of it runs on', async (t) => {
  const { w, run } = world();
  for (const slot of w.slots) w.boot(slot);
  await run.until(w.scheduler.now + 2_000, () => w.serving().length === 1);
  const copy = w.slots[1].copy!;
  let stopped = 0;
  void copy.stop().then(() => stopped++);
  await run.until(w.scheduler.now + 2_000, () => stopped === 1);
  const reported = w.transitions.length;
  void copy.stop().then(() => stopped++);
  await run.until(w.scheduler.now + 3 * w.options.leaseTtlMs, () => false);
  t.equal(stopped, 2, 'the second stop resolves');
  t.equal(copy.roleName, 'stopped');
  t.equal(w.transitions.length, reported, 'and reports no transition');
  t.same(EDGES.stopped, [], 'the table has no edge out of stopped');
  t.same(w.checker.failures, []);
});

t.test('the table names every role, and every edge leads to a role', (t) => {
  t.same(Object.keys(EDGES).sort(), [...ROLES].sort());
  for (const [from, tos] of Object.entries(EDGES)) for (const to of tos) t.ok(ROLES.includes(to), `${from} -> ${to}`);
  t.end();
});
