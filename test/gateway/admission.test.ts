import t from 'tap';
import { IN_FLIGHT_MIN, ShardBudget } from '../../gateway/admission.js';

/**
 * The per-shard admission budget (issue 17): what the shard drains in the
 * queue target, measured only while backlogged, less the engine's queue time;
 * retry delays from what is outstanding. Times are given, not read.
 */
const options = { queueTargetMs: 200, inFlightMax: 10_000 };

/** Answers of `size` commands every `everyMs`, `roundTripMs` after their request left, with commands still queued behind each. */
function backlogged(
  budget: ShardBudget,
  rounds: number,
  size: number,
  everyMs: number,
  engineQueuedMs?: number,
  roundTripMs = engineQueuedMs ?? 0,
) {
  let now = 1_000;
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < size; k++) budget.take();
    now += everyMs;
    budget.onAnswered(size, now, roundTripMs, engineQueuedMs, true);
  }
  return now;
}

t.test('an unmeasured shard admits up to the ceiling, then sheds', (t) => {
  const budget = new ShardBudget({ queueTargetMs: 200, inFlightMax: 3 });
  t.equal(budget.limit, 3);
  t.ok(budget.admit() && budget.admit() && budget.admit());
  t.notOk(budget.admit(), 'the fourth is shed');
  t.equal(budget.inFlight, 3, 'a shed command takes no place');
  budget.onAnswered(1, 10, 1, undefined, false);
  t.ok(budget.admit(), 'an answer frees a place');
  t.end();
});

t.test('while backlogged the budget is the drain rate times the target', (t) => {
  const budget = new ShardBudget(options);
  backlogged(budget, 50, 100, 10); // 10 commands per ms
  t.equal(budget.view.drainPerSec, 10_000);
  t.equal(budget.limit, 2_000, '10/ms for 200 ms');
  t.end();
});

t.test('answers with nothing queued behind them do not count as capacity', (t) => {
  const budget = new ShardBudget(options);
  const end = backlogged(budget, 50, 100, 10);
  // The backlog's last answer: nothing queued behind it any more.
  budget.take();
  budget.onAnswered(1, end + 0.1, 0, undefined, false);
  // A trickle afterwards: 1 command per 100 ms, nothing waiting. The capacity measured stays.
  let now = 10_000;
  for (let i = 0; i < 50; i++) {
    budget.take();
    budget.onAnswered(1, (now += 100), 0, undefined, false);
  }
  t.equal(budget.limit, 2_000);
  t.end();
});

t.test("the engine's queue time takes its share of the target", (t) => {
  const budget = new ShardBudget(options);
  backlogged(budget, 200, 100, 10, 150);
  t.ok(Math.abs(budget.view.engineQueuedMs - 150) < 1, `engine queue ${budget.view.engineQueuedMs} ms`);
  t.ok(Math.abs(budget.limit - 500) <= 5, `10/ms for the 50 ms left: ${budget.limit}`);
  backlogged(budget, 200, 100, 10, 400);
  t.equal(budget.limit, IN_FLIGHT_MIN, 'an engine queue past the target leaves the floor');
  t.end();
});

t.test("a request's round trip keeps the pipe full on top of the target; the engine's queue is not part of it", (t) => {
  const budget = new ShardBudget(options);
  backlogged(budget, 200, 100, 10, undefined, 50);
  t.equal(budget.limit, 2_500, '10/ms for the 50 ms round trip and the 200 ms target');
  const queued = new ShardBudget(options);
  backlogged(queued, 200, 100, 10, 100, 150);
  t.ok(Math.abs(queued.limit - 1_500) <= 5, `10/ms for 50 ms of service and 100 ms of target left: ${queued.limit}`);
  t.end();
});

t.test('the budget never exceeds its ceiling', (t) => {
  const budget = new ShardBudget({ queueTargetMs: 200, inFlightMax: 500 });
  backlogged(budget, 50, 1_000, 1);
  t.equal(budget.limit, 500);
  t.end();
});

t.test('the retry delay is the time to drain what is outstanding, spread and bounded', (t) => {
  const budget = new ShardBudget(options);
  t.equal(
    budget.retryAfterMs(() => 0.5),
    200,
    'unmeasured: the target',
  );
  backlogged(budget, 50, 100, 10);
  for (let i = 0; i < 1_000; i++) budget.take();
  t.equal(
    budget.retryAfterMs(() => 0.5),
    100,
    '1,000 outstanding at 10/ms',
  );
  t.equal(
    budget.retryAfterMs(() => 0),
    50,
    'spread down by half',
  );
  t.equal(
    budget.retryAfterMs(() => 0.999),
    150,
    'spread up by half',
  );
  const idle = new ShardBudget({ queueTargetMs: 1, inFlightMax: 10 });
  t.equal(
    idle.retryAfterMs(() => 0),
    10,
    'at least 10 ms',
  );
  const slow = new ShardBudget(options);
  backlogged(slow, 50, 1, 1_000); // 1 per second
  for (let i = 0; i < 100; i++) slow.take();
  t.equal(
    slow.retryAfterMs(() => 0.5),
    5_000,
    'at most 5 s',
  );
  t.end();
});

t.test('a budget measured low grows back while bids are refused and the shard answers fast', (t) => {
  const budget = new ShardBudget(options);
  backlogged(budget, 50, 10, 10); // 1 per ms: 200
  t.equal(budget.limit, 200);
  // Now the shard answers each full budget within 10 ms, nothing queued here, bids refused meanwhile.
  let now = 10_000;
  for (let i = 0; i < 40; i++) {
    const limit = budget.limit;
    while (budget.admit());
    now += 10;
    budget.onAnswered(limit, now, 10, undefined, false);
  }
  t.equal(budget.limit, 10_000, 'back at the ceiling: the rate follows what the budget let through');
  t.end();
});
