import t from 'tap';
import { AuctionCore } from '../../engine/core/index.js';
import type { BidOutcome, Command, LogBatch, LogEvent } from '../../protocol/index.js';
import type { BidResult, LiveState } from '../../protocol/public.js';
import { check, expectedNotifications, outagesOf, type ShardEntries } from '../../testkit/chaos/checks.js';
import type { BidRecord } from '../../testkit/chaos/client.js';
import { planFaults, type FaultRecord } from '../../testkit/chaos/faults.js';
import { Random } from '../../testkit/simulator/random.js';

/**
 * The checkers of `make chaos` (testkit/chaos/checks.ts) hold a history to
 * the rules: here over a small log made by the real core, with answers and
 * watcher states that are right, and ones that each break one rule, so that
 * every checker is seen to catch what it exists for. And the fault plan is
 * a function of the seed that never takes down more than the system
 * promises to survive.
 */
const CAPACITY = { auctionsMax: 64, idempotencyEntriesMax: 1_024 };
const T = 1_800_000_000_000;

/** One shard's log: a fence, then every command decided by the core, one batch each. */
function logOf(commands: Command[]): { shards: ShardEntries[]; events: LogEvent[] } {
  const core = new AuctionCore({ shard: 0, ...CAPACITY });
  const entries: ShardEntries['entries'] = [
    {
      streamSeq: 1,
      batch: { v: 1, shard: 0, writer: 'w1', t: T, events: [], leader: { engineId: 'e', writer: 'w1' } },
    },
  ];
  const events: LogEvent[] = [];
  commands.forEach((command, i) => {
    const event: LogEvent = { seq: i + 1, command, outcome: core.apply(command, i + 1, T + i) };
    events.push(event);
    const batch: LogBatch = { v: 1, shard: 0, writer: 'w1', t: T + i, events: [event] };
    entries.push({ streamSeq: i + 2, batch });
  });
  return { shards: [{ shard: 0, entries }], events };
}

const create: Command = {
  type: 'create',
  sellerId: 1,
  startingPrice: 100,
  reservePrice: 0,
  startsAt: 0,
  endsAt: T + 3_600_000,
  softCloseSeconds: 0,
};

function recordOf(event: LogEvent, client: number, overrides: Partial<BidResult> = {}): BidRecord {
  const command = event.command as Extract<Command, { type: 'bid' }>;
  const o = event.outcome as BidOutcome;
  return {
    client,
    userId: command.bidderId,
    auctionId: command.auctionId,
    bidId: command.bidId,
    maxBid: command.maxBid,
    sentAt: 1_000,
    decidedAt: 1_010,
    attempts: 1,
    trail: [],
    result: {
      bidId: command.bidId,
      auctionId: o.auctionId,
      status: o.status,
      price: o.price,
      leading: o.leading,
      endsAt: o.endsAt,
      seq: event.seq,
      ...(o.reason ? { reason: o.reason } : {}),
      ...overrides,
    },
    error: null,
  };
}

t.test('a right history passes every checker; each wrong answer is counted by its own checker', (t) => {
  const auctionId = 1024; // auction 1 of shard 0
  const { shards, events } = logOf([
    create,
    { type: 'bid', auctionId, bidderId: 11, bidId: 1, maxBid: 500 },
    { type: 'bid', auctionId, bidderId: 12, bidId: 1, maxBid: 900 },
    { type: 'bid', auctionId, bidderId: 11, bidId: 2, maxBid: 200 },
  ]);
  t.equal(events[0].outcome.auctionId, auctionId, 'the core numbers the auction as the test expects');
  const [, first, second, low] = events;
  t.equal((second.outcome as BidOutcome).outbidUserId, 11, 'the second bid outbids the first bidder');
  t.equal(low.outcome.status, 'rejected');
  const final: LiveState = {
    auctionId,
    status: 'open',
    price: (second.outcome as BidOutcome).price,
    leaderId: 12,
    bidCount: 2,
    endsAt: create.type === 'create' ? create.endsAt : 0,
    version: (second.outcome as BidOutcome).version,
    reserveMet: false,
  };
  const base = {
    shards,
    capacity: CAPACITY,
    watched: [auctionId],
    missingNotifications: [],
    missingWritten: 0,
    faults: [],
    endedAt: 2_000,
  };
  const right = check({
    ...base,
    bids: [recordOf(first, 0), recordOf(second, 1), recordOf(low, 0)],
    watchers: [{ client: 0, states: new Map([[auctionId, final]]) }],
  });
  t.same(right.failures, [], 'no failure');
  t.match(right, {
    ackedLost: 0,
    acceptedTwice: 0,
    ruleMismatches: 0,
    stateMismatches: 0,
    errorAnswers: 0,
    undecided: 0,
  });

  const lost = recordOf(first, 2, { seq: 99 });
  const wrongPrice = recordOf(second, 3, { price: 1 });
  const never = { ...recordOf(first, 4), result: null, decidedAt: null };
  const errored = { ...recordOf(first, 5), result: null, error: 'invalid_request: no' };
  const wrong = check({
    ...base,
    bids: [lost, wrongPrice, never, errored],
    watchers: [
      { client: 0, states: new Map([[auctionId, { ...final, version: final.version - 1, bidCount: 1 }]]) },
      { client: 1, states: new Map() },
    ],
    missingNotifications: ['11/outbid/1024/3 (not in the stream)'],
  });
  t.equal(wrong.ackedLost, 1, 'an accepted answer the log does not hold at its seq is a lost bid');
  t.equal(wrong.ruleMismatches, 1, 'an answer that differs from the logged outcome');
  t.equal(wrong.stateMismatches, 2, 'a watcher left behind, and one that never saw the auction');
  t.equal(wrong.undecided, 1);
  t.equal(wrong.errorAnswers, 1);
  t.equal(wrong.notificationsMissing, 1);
  t.ok(wrong.failures.length >= 6, 'each one is told in words');
  t.end();
});

t.test('a bidId accepted twice in the log is found, and the notifications due follow the log', (t) => {
  const auctionId = 1024;
  const { shards } = logOf([
    create,
    { type: 'bid', auctionId, bidderId: 11, bidId: 1, maxBid: 500 },
    { type: 'bid', auctionId, bidderId: 12, bidId: 1, maxBid: 900 },
  ]);
  // A second copy of the first bid's event, as a log with a bidId decided twice would hold.
  const again = structuredClone(shards[0].entries[2]);
  again.streamSeq = 4;
  again.batch.events[0].seq = 3;
  const doubled: ShardEntries[] = [{ shard: 0, entries: [...shards[0].entries.slice(0, 3), again] }];
  const verdict = check({
    shards: doubled,
    capacity: CAPACITY,
    bids: [],
    watchers: [],
    watched: [],
    missingNotifications: [],
    missingWritten: 0,
    faults: [],
    endedAt: 0,
  });
  t.equal(verdict.acceptedTwice, 1, 'the same bidId accepted at two sequences');
  t.same([...expectedNotifications(shards).keys()], ['11/outbid/1024/3'], 'the outbid bidder is owed one notification');
  t.end();
});

t.test('a wait spanning two fault groups counts for the earlier one; each group has its bound', (t) => {
  const fault = (group: number, at: number, end: number, targetKind: FaultRecord['targetKind']): FaultRecord => ({
    at,
    target: `${targetKind}-x`,
    targetKind,
    kind: 'pause',
    durationMs: end - at,
    startedAt: at,
    endedAt: end,
    group,
  });
  const bid = (sentAt: number, decidedAt: number | null): BidRecord => ({
    client: 0,
    userId: 1,
    auctionId: 1024,
    bidId: 1,
    maxBid: 1,
    sentAt,
    decidedAt,
    attempts: 1,
    trail: [],
    result: null,
    error: null,
  });
  const outages = outagesOf(
    [bid(1_000, 4_000), bid(20_500, 20_600), bid(6_000, 7_500), bid(21_000, null)],
    [fault(0, 1_000, 2_000, 'engine'), fault(1, 5_000, 6_000, 'nats'), fault(2, 20_000, 21_000, 'gateway')],
    25_000,
  );
  t.same(
    outages.map((o) => [o.group, o.maxOutageMs, o.boundMs]),
    [
      [0, 3_000, 2_000],
      [1, 1_500, 3_000],
      [2, 4_000, 2_000],
    ],
    'the first wait belongs to group 0 only; an undecided bid waits until the run ended',
  );
  // Group 4 begins inside group 3's settling window: a bid sent after it began met group 4's fault.
  const overlapping = outagesOf(
    [bid(30_200, 30_900), bid(32_500, 38_000), bid(31_500, 33_000)],
    [fault(3, 30_000, 31_000, 'engine'), fault(4, 32_000, 32_500, 'nats')],
    40_000,
  );
  t.same(
    overlapping.map((o) => [o.group, o.maxOutageMs]),
    [
      [3, 1_500],
      [4, 5_500],
    ],
    'a bid sent after the later group began counts for it; one sent before and waiting across both, for the earlier',
  );
  t.end();
});

t.test('the fault plan is the seed’s, and never more than one gateway or one NATS node at a time', (t) => {
  const targets = [
    ...['nats-0', 'nats-1', 'nats-2'].map((name) => ({ name, kind: 'nats' as const })),
    { name: 'engine-a', kind: 'engine' as const },
    { name: 'engine-b', kind: 'engine' as const },
    { name: 'replica-a', kind: 'replica' as const },
    { name: 'audit', kind: 'audit' as const },
    { name: 'gateway-a', kind: 'gateway' as const },
    { name: 'gateway-b', kind: 'gateway' as const },
  ];
  const options = { durationMs: 600_000, targets };
  t.same(planFaults(new Random(7), options), planFaults(new Random(7), options), 'the same seed, the same plan');
  t.not(JSON.stringify(planFaults(new Random(7), options)), JSON.stringify(planFaults(new Random(8), options)));
  let pairs = 0;
  const violations: string[] = [];
  for (let seed = 1; seed <= 50; seed++) {
    const plan = planFaults(new Random(seed), options);
    plan.forEach((group, i) => {
      // A NATS fault's election (4-9 s) must be over before the next group, or its outage is charged there.
      const next = plan[i + 1];
      const end = Math.max(...group.map((f) => f.at + f.durationMs));
      if (next && group.some((f) => f.targetKind === 'nats') && next[0].at - end < 10_000)
        violations.push(`seed ${seed}: group ${i + 1} starts ${next[0].at - end} ms after a NATS fault`);
    });
    for (const group of plan) {
      const where = `seed ${seed}: ${JSON.stringify(group)}`;
      if (group.length < 1 || group.length > 2) violations.push(`${where}: not one or two faults`);
      if (group.length === 2) {
        pairs++;
        const [a, b] = group;
        if (a.target === b.target) violations.push(`${where}: one target twice`);
        if (a.targetKind === b.targetKind && (a.targetKind === 'nats' || a.targetKind === 'gateway'))
          violations.push(`${where}: two ${a.targetKind}s at once`);
      }
      for (const f of group) {
        if (f.targetKind === 'nats' && f.kind !== 'kill' && f.kind !== 'pause')
          violations.push(`${where}: a NATS node is only killed or paused`);
        if (f.at + f.durationMs > options.durationMs - 8_000) violations.push(`${where}: runs into the tail`);
      }
    }
  }
  t.same(violations, [], 'no group breaks the rules of the plan');
  t.ok(pairs > 0, `some groups are pairs (${pairs})`);
  t.end();
});
