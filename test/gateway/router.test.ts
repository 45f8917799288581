import t from 'tap';
import { CommandRouter, FULL_REQUESTS_IN_FLIGHT_MAX } from '../../gateway/router.js';
import type { CommandReply, CommandResult, EngineClient } from '../../protocol/index.js';

/**
 * The gateway's batching of commands per shard: one request per shard per
 * tick, at most N requests in flight to a shard, and what arrives meanwhile
 * leaves together when an answer comes back. The engine side is a recorder
 * answering on demand (the NATS path is covered by the gateway's tests).
 */
type Sent = { shard: number; commands: unknown[]; answer: (queuedMs?: number) => void };

function recorder() {
  const sent: Sent[] = [];
  const engines = {
    request(shard: number, commands: unknown[]): Promise<CommandReply> {
      return new Promise((resolve) => {
        sent.push({
          shard,
          commands,
          answer: (queuedMs) =>
            resolve({
              results: commands.map((c) => ({ status: 'error', code: 'invalid_request', message: JSON.stringify(c) })),
              ...(queuedMs === undefined ? {} : { queuedMs }),
            }),
        });
      });
    },
  } as unknown as EngineClient;
  return { sent, engines };
}

/** A router with a budget generous enough to stay out of the way (the admission tests set their own). */
function routerOf(engines: EngineClient, pendingMax: number, requestsInFlightMax: number) {
  return new CommandRouter(engines, {
    pendingMax,
    requestsInFlightMax,
    admission: { queueTargetMs: 200, inFlightMax: 100_000 },
  });
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const messageOf = (r: CommandResult) => (r.status === 'error' ? r.message : '');

t.test('commands of one tick for one shard leave in one request; answers reach their senders', async (t) => {
  const { sent, engines } = recorder();
  const router = routerOf(engines, 1_000, 2);
  const answers = [router.send(1, 'a'), router.send(2, 'x'), router.send(1, 'b')];
  await tick();
  t.same(
    sent.map((s) => [s.shard, s.commands]),
    [
      [1, ['a', 'b']],
      [2, ['x']],
    ],
  );
  for (const s of sent) s.answer();
  t.same((await Promise.all(answers)).map(messageOf), ['"a"', '"x"', '"b"']);
  t.equal(router.waiting, 0);
});

t.test('past the in-flight bound, commands wait and leave together when an answer returns', async (t) => {
  const { sent, engines } = recorder();
  const router = routerOf(engines, 1_000, 1);
  const first = router.send(0, 1);
  await tick();
  t.equal(sent.length, 1, 'one request in flight');
  const later = [router.send(0, 2), router.send(0, 3)];
  await tick();
  const again = router.send(0, 4);
  await tick();
  t.equal(sent.length, 1, 'nothing more leaves while it is in flight');
  t.equal(router.waiting, 4);
  sent[0].answer();
  t.same(messageOf(await first), '1');
  t.same(sent[1]?.commands, [2, 3, 4], 'the waiting commands leave in one request');
  sent[1].answer();
  t.same((await Promise.all([...later, again])).map(messageOf), ['2', '3', '4']);
  t.equal(router.waiting, 0);
});

t.test('a shard busy at its bound does not hold back another shard', async (t) => {
  const { sent, engines } = recorder();
  const router = routerOf(engines, 1_000, 1);
  void router.send(0, 'a');
  await tick();
  void router.send(0, 'b');
  void router.send(3, 'c');
  await tick();
  t.same(
    sent.map((s) => s.shard),
    [0, 3],
  );
});

t.test('more than a request holds is split, each part counting against the bound', async (t) => {
  const { sent, engines } = recorder();
  const router = routerOf(engines, 10_000, 2);
  for (let i = 0; i < 3_000; i++) void router.send(0, i);
  await tick();
  t.same(
    sent.map((s) => s.commands.length),
    [1_024, 1_024],
    'two requests (the bound), the rest waits',
  );
  sent[0].answer();
  await tick();
  t.same(
    sent.map((s) => s.commands.length),
    [1_024, 1_024, 952],
  );
});

t.test('past pendingMax a command is answered unavailable at once', async (t) => {
  const { engines } = recorder();
  const router = routerOf(engines, 2, 1);
  void router.send(0, 1);
  void router.send(0, 2);
  t.match(await router.send(0, 3), { status: 'error', code: 'unavailable' });
});

t.test('bids past the shard budget are shed at once with overloaded and a retry delay, and never sent', async (t) => {
  const { sent, engines } = recorder();
  const shedShards: number[] = [];
  const router = new CommandRouter(engines, {
    pendingMax: 10_000,
    requestsInFlightMax: 2,
    admission: { queueTargetMs: 200, inFlightMax: 100 },
    observer: { shed: (shard) => shedShards.push(shard), answered: () => undefined, resent: () => undefined },
  });
  const answers = Array.from({ length: 150 }, (_, i) => router.send(0, i, true));
  const shed = (await Promise.all(answers.slice(100))) as (CommandResult & { retryAfterMs?: number })[];
  for (const r of shed) {
    t.match(r, { status: 'error', code: 'overloaded' });
    t.ok(r.retryAfterMs! >= 10 && r.retryAfterMs! <= 5_000, `retryAfterMs ${r.retryAfterMs}`);
  }
  t.equal(shedShards.length, 50, 'each shed bid counted for its shard');
  await tick();
  t.same(
    sent.flatMap((s) => s.commands),
    Array.from({ length: 100 }, (_, i) => i),
    'only the admitted bids reach the engine',
  );
  const other = router.send(3, 'other shard', true);
  // Creations and operators' commands are never shed by the budget: they queue.
  const creation = router.send(0, 'create');
  await tick();
  sent[0].answer();
  await tick();
  for (const s of sent.slice(1)) s.answer();
  t.same(messageOf(await other), '"other shard"', 'another shard has its own budget');
  t.same(messageOf(await creation), '"create"');
  // Once answers came back, the same bid (same bidId) is admitted again: nothing of it was recorded.
  const retried = router.send(0, 120, true);
  await tick();
  sent[sent.length - 1].answer();
  t.same(messageOf(await retried), '120');
});

t.test("the budget shrinks by the engine's reported queue time", async (t) => {
  const { sent, engines } = recorder();
  const router = new CommandRouter(engines, {
    pendingMax: 100_000,
    requestsInFlightMax: 1,
    admission: { queueTargetMs: 100, inFlightMax: 50_000 },
  });
  // A backlog: one request in flight and commands queued behind it, answered with the engine's queue time.
  for (let i = 0; i < 200; i++) void router.send(0, i, true);
  await tick();
  for (let round = 0; round < 30; round++) {
    for (let i = 0; i < 200; i++) void router.send(0, i, true);
    await new Promise((resolve) => setTimeout(resolve, 2));
    sent[sent.length - 1].answer(90);
    await tick();
  }
  const [view] = router.budgetViews();
  t.ok(view.engineQueuedMs > 80, `engine queue time followed: ${view.engineQueuedMs} ms`);
  t.ok(view.drainPerSec > 0, 'the drain rate was measured while backlogged');
  t.ok(
    view.limit <=
      Math.max(64, Math.ceil((view.drainPerSec / 1_000) * (view.serviceMs + 100 - view.engineQueuedMs)) + 1),
    `limit ${view.limit}: what ${view.drainPerSec}/s drains in a round trip (${view.serviceMs} ms) and what the engine's queue leaves of the target`,
  );
});

t.test("this gateway's own event-loop lag is not counted as the shard's round trip", async (t) => {
  const views = [];
  const asked: number[][] = [];
  for (const lateMs of [0, 1_000]) {
    const { sent, engines } = recorder();
    const router = new CommandRouter(engines, {
      pendingMax: 100_000,
      requestsInFlightMax: 1,
      admission: { queueTargetMs: 100, inFlightMax: 50_000 },
      lateWithin: (from, to) => {
        asked.push([from, to]);
        return Math.min(lateMs, to - from);
      },
    });
    void router.send(0, 0, true);
    await tick();
    await new Promise((resolve) => setTimeout(resolve, 20));
    sent[0].answer(0);
    await tick();
    views.push(router.budgetViews()[0]);
  }
  t.ok(views[0].serviceMs >= 15, `without lag the round trip counts whole (${views[0].serviceMs} ms)`);
  t.equal(views[1].serviceMs, 0, 'a lag longer than the round trip leaves none of it');
  t.ok(
    asked.every(([from, to]) => to - from >= 15),
    'asked about the request from when it left to its answer',
  );
});

t.test('past the in-flight bound only full requests leave, up to FULL_REQUESTS_IN_FLIGHT_MAX', async (t) => {
  const { sent, engines } = recorder();
  const router = routerOf(engines, 100_000, 2);
  for (let i = 0; i < 10 * 1_024 + 100; i++) void router.send(0, i);
  await tick();
  t.same(
    sent.map((s) => s.commands.length),
    Array.from({ length: FULL_REQUESTS_IN_FLIGHT_MAX }, () => 1_024),
    'a backlog leaves in full requests, as many as the bound for them',
  );
  sent[0].answer();
  await tick();
  t.equal(sent.length, FULL_REQUESTS_IN_FLIGHT_MAX + 1, 'an answer lets one more full request leave');
  t.equal(sent[sent.length - 1].commands.length, 1_024);
});
