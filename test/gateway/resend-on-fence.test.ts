import t from 'tap';
import { CommandRouter } from '../../gateway/router.js';
import type { CommandReply, CommandResult, EngineClient } from '../../protocol/index.js';
import { Waiters } from '../../testkit/waiters.js';

/**
 * A new primary's fence, seen on the shard's stream, makes the router send
 * the bids still in flight to that shard again (gateway/router.ts
 * `primaryChanged`): requests that reached an old primary that is paused or
 * cut off would otherwise wait for their whole timeout, and hold the shard's
 * in-flight slots meanwhile. The engine side is a recorder answered by hand.
 */
type Sent = { shard: number; commands: unknown[]; timeoutMs?: number; answer: (results: CommandResult[]) => void };

function recorder() {
  const sent: Sent[] = [];
  const waiters = new Waiters();
  const engines = {
    request(shard: number, commands: unknown[], _admin?: boolean, timeoutMs?: number): Promise<CommandReply> {
      return new Promise((resolve) => {
        sent.push({ shard, commands, timeoutMs, answer: (results) => resolve({ results }) });
        waiters.wake();
      });
    },
  } as unknown as EngineClient;
  /** Resolves with the n-th request sent (1-based) as soon as it is. */
  const nth = (n: number) =>
    waiters.until(
      () => sent[n - 1],
      5_000,
      () => `only ${sent.length} requests sent`,
    );
  return { sent, engines, nth };
}

const routerOf = (engines: EngineClient) =>
  new CommandRouter(engines, {
    pendingMax: 1_000,
    requestsInFlightMax: 1,
    admission: { queueTargetMs: 200, inFlightMax: 100_000 },
  });

const bid = (bidId: number) => ({ type: 'bid', auctionId: 1024, bidderId: 7, bidId, maxBid: 500 });
const accepted = (commands: unknown[]): CommandResult[] =>
  commands.map((c) => ({ status: 'accepted', bidId: (c as { bidId: number }).bidId }) as unknown as CommandResult);
const unavailable = (commands: unknown[]): CommandResult[] =>
  commands.map(() => ({ status: 'error', code: 'unavailable', message: 'engine unavailable: timeout' }));
const tick = () => new Promise((resolve) => setImmediate(resolve));

t.test('after a fence, the bids in flight to that shard go again and the first decided answer is theirs', async (t) => {
  const { sent, engines, nth } = recorder();
  const router = routerOf(engines);
  const first = [router.send(0, bid(1)), router.send(0, bid(2))];
  const other = router.send(1, bid(3));
  await nth(2);
  t.same(
    sent.map((s) => s.shard),
    [0, 1],
    'one request per shard',
  );
  // Queued behind the shard's one in-flight slot, held by the lost request.
  const queued = router.send(0, bid(4));
  await tick();
  t.equal(sent.length, 2, 'the third bid for shard 0 waits for the slot');

  t.equal(router.primaryChanged(0), 1, 'one request in flight to shard 0 goes again');
  const resend = await nth(3);
  t.equal(resend.shard, 0, 'only the fenced shard is sent again');
  t.same(resend.commands, [bid(1), bid(2)], 'the same commands, the same bidIds');
  t.ok(resend.timeoutMs! < 2_000, `a copy has a short deadline of its own (${resend.timeoutMs} ms)`);
  resend.answer(accepted(resend.commands));
  t.same(
    (await Promise.all(first)).map((r) => r.status),
    ['accepted', 'accepted'],
    'the copy answers the callers',
  );
  const next = await nth(4);
  t.same(next.commands, [bid(4)], 'the slot is free again: the waiting bid leaves');
  sent[0].answer(unavailable(sent[0].commands)); // the old primary's timeout, late: nobody hears it
  next.answer(accepted(next.commands));
  t.equal((await queued).status, 'accepted');
  sent[1].answer(accepted(sent[1].commands));
  t.equal((await other).status, 'accepted', 'the other shard is untouched');
  t.equal(router.waiting, 0);
});

t.test('the original timing out first waits for the copy; a copy with no responder goes again', async (t) => {
  const { engines, nth } = recorder();
  const router = routerOf(engines);
  const answer = router.send(0, bid(1));
  const original = await nth(1);
  router.primaryChanged(0);
  const copy = await nth(2);
  copy.answer(unavailable(copy.commands)); // no responder yet: the new primary takes the subject a moment later
  const again = await nth(3);
  t.same(again.commands, [bid(1)], 'sent again');
  original.answer(unavailable(original.commands));
  await tick();
  again.answer(accepted(again.commands));
  t.equal((await answer).status, 'accepted', 'the answer is the decided one, not the timeout');
});

t.test(
  'a second fence while a copy is out sends nothing more; a request with a creation is never sent twice',
  async (t) => {
    const { sent, engines, nth } = recorder();
    const router = routerOf(engines);
    const created = router.send(0, { type: 'create', sellerId: 1, startingPrice: 100, endsAt: 1 });
    await nth(1);
    router.primaryChanged(0);
    router.primaryChanged(0);
    await tick();
    t.equal(sent.length, 1, 'a creation has no key: sending it twice could create two auctions');
    sent[0].answer(unavailable(sent[0].commands));
    t.equal((await created).status, 'error');

    const bids = router.send(0, bid(9));
    await nth(2);
    router.primaryChanged(0);
    const copy = await nth(3);
    router.primaryChanged(0);
    await tick();
    t.equal(sent.length, 3, 'one copy per request at a time');
    copy.answer(accepted(copy.commands));
    t.equal((await bids).status, 'accepted');
  },
);
