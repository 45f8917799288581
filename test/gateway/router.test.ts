import t from 'tap';
import { CommandRouter } from '../../gateway/router.js';
import type { CommandResult, EngineClient } from '../../protocol/index.js';

/**
 * The gateway's batching of commands per shard: one request per shard per
 * tick, at most N requests in flight to a shard, and what arrives meanwhile
 * leaves together when an answer comes back. The engine side is a recorder
 * answering on demand (the NATS path is covered by the gateway's tests).
 */
type Sent = { shard: number; commands: unknown[]; answer: () => void };

function recorder() {
  const sent: Sent[] = [];
  const engines = {
    send(shard: number, commands: unknown[]): Promise<CommandResult[]> {
      return new Promise((resolve) => {
        sent.push({
          shard,
          commands,
          answer: () =>
            resolve(commands.map((c) => ({ status: 'error', code: 'invalid_request', message: JSON.stringify(c) }))),
        });
      });
    },
  } as unknown as EngineClient;
  return { sent, engines };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const messageOf = (r: CommandResult) => (r.status === 'error' ? r.message : '');

t.test('commands of one tick for one shard leave in one request; answers reach their senders', async (t) => {
  const { sent, engines } = recorder();
  const router = new CommandRouter(engines, 1_000, 2);
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
  const router = new CommandRouter(engines, 1_000, 1);
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
  const router = new CommandRouter(engines, 1_000, 1);
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
  const router = new CommandRouter(engines, 10_000, 2);
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
  const router = new CommandRouter(engines, 2, 1);
  void router.send(0, 1);
  void router.send(0, 2);
  t.match(await router.send(0, 3), { status: 'error', code: 'unavailable' });
});
