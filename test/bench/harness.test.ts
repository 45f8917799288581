import t from 'tap';
import { Latency } from '../../bench/harness/latency.js';
import { OpenLoopSchedule, pace } from '../../bench/harness/schedule.js';
import { BIDS_PER_CONNECTION_RUN, bidSlot, stateVersion } from '../../bench/harness/worker.js';
import { renderHtml, renderTable, svgChart, type BenchRun } from '../../bench/harness/report.js';

t.test('latency is measured from the intended send time: a stall shows in every request it delayed', (t) => {
  // 1,000 requests/s for 10 s; the server answers in 1 ms, except that it stalls from t=2 s to t=3 s.
  const answerAt = (sentAt: number) => (sentAt >= 2_000 && sentAt < 3_000 ? 3_001 : sentAt + 1);
  const openLoop = new Latency();
  const schedule = new OpenLoopSchedule(1_000, 0, 10_000);
  for (let i = 0; i < schedule.total; i++) openLoop.record(schedule.intendedAt(i), answerAt(schedule.intendedAt(i)));
  t.equal(openLoop.count, 10_000);
  t.ok(Math.abs(openLoop.ms(50) - 1) < 0.01, `p50 ${openLoop.ms(50)} ms: most requests take 1 ms`);
  // The 1,000 requests meant for the stall waited 1..1,001 ms: the top 5% and 1% of all fall in it.
  t.ok(Math.abs(openLoop.ms(95) - 501) < 2, `p95 ${openLoop.ms(95)} ms`);
  t.ok(Math.abs(openLoop.ms(99) - 901) < 2, `p99 ${openLoop.ms(99)} ms`);
  t.ok(Math.abs(openLoop.ms(100) - 1_001) < 2, `max ${openLoop.ms(100)} ms`);

  // The coordinated-omission mistake: a closed-loop sender (one request in flight) timed from its actual send.
  const closedLoop = new Latency();
  let clock = 0;
  let sent = 0;
  while (clock < 10_000) {
    const done = answerAt(clock);
    closedLoop.record(clock, done);
    clock = Math.max(done, sent + 1);
    sent = clock;
  }
  t.ok(
    closedLoop.ms(99) <= 1.01,
    `timed from the actual send, p99 looks like ${closedLoop.ms(99)} ms: the stall hides in one sample`,
  );

  const copy = Latency.decode(openLoop.encode());
  t.equal(copy.count, openLoop.count, 'a histogram crosses threads intact');
  t.equal(copy.ms(99), openLoop.ms(99));
  copy.add(openLoop);
  t.equal(copy.count, 20_000, 'histograms of several workers add up');
  t.end();
});

t.test(
  'the open-loop schedule keeps its rate, and a late sender catches up without shifting intended times',
  async (t) => {
    const s = new OpenLoopSchedule(2_000, 1_000, 10_000);
    t.equal(s.dueBy(999), 0, 'nothing before the start');
    t.equal(s.dueBy(1_000), 1, 'the first at the start');
    t.equal(s.dueBy(1_999.9), 2_000, '2,000 in the first second');
    t.equal(s.dueBy(60_000), 10_000, 'never more than the total');
    t.equal(s.intendedAt(1), 1_000.5, 'spaced 1/rate apart');
    t.throws(() => new OpenLoopSchedule(0, 0, 1), RangeError);
    t.throws(() => new OpenLoopSchedule(Number.NaN, 0, 1), RangeError);

    // A simulated clock: the sender sleeps as asked, except once, when it is 200 ms late.
    let clock = 0;
    let sleeps = 0;
    const sends: [number, number, number][] = [];
    const schedule = new OpenLoopSchedule(1_000, 0, 3_000);
    const count = await pace(schedule, (i, intendedAt) => sends.push([i, intendedAt, clock]), {
      clock: () => clock,
      sleep: (ms) => {
        sleeps++;
        clock += sleeps === 500 ? 200 : Math.max(ms, 0.25);
        return Promise.resolve();
      },
    });
    t.equal(count, 3_000, 'every request is sent');
    t.same(
      sends.map((x) => x[0]),
      Array.from({ length: 3_000 }, (_, i) => i),
      'in order',
    );
    t.ok(
      sends.every(([i, intendedAt]) => intendedAt === i),
      'each keeps its intended time (1 ms apart at 1,000/s)',
    );
    const lateness = sends.map(([, intendedAt, sentAt]) => sentAt - intendedAt);
    const worst = Math.max(...lateness);
    t.ok(worst >= 195 && worst <= 205, `the first request due in the 200 ms stall went ${worst} ms late`);
    const late = lateness.filter((ms) => ms > 50).length;
    t.ok(
      late >= 140 && late <= 160,
      `the requests due in the stall went out in a burst after it, none skipped (${late} more than 50 ms late)`,
    );
    const perSecond = [0, 1, 2].map(
      (second) => sends.filter(([, , sentAt]) => sentAt >= second * 1_000 && sentAt < (second + 1) * 1_000).length,
    );
    t.ok(
      perSecond.every((n) => Math.abs(n - 1_000) <= 5),
      `about 1,000 sent in each simulated second: ${perSecond.join(', ')}`,
    );

    let stopAfter = 10;
    let now = 0;
    const stopped = await pace(new OpenLoopSchedule(1_000, 0, 1_000), () => stopAfter--, {
      clock: () => now,
      sleep: () => {
        now += 1;
        return Promise.resolve();
      },
      stopped: () => stopAfter <= 0,
    });
    t.ok(stopped < 1_000, 'a stop request ends the run early');
  },
);

const run: BenchRun = {
  bench: 'make-bench',
  at: '2026-11-21T00:00:00.000Z',
  commit: 'abc1234',
  node: 'v20.0.0',
  natsServer: 'nats-server: v2.9.10',
  machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24 },
  setup: { shards: 4 },
  scenarios: [
    {
      name: 'uniform (peak)',
      description: '',
      offeredPerSec: 40_000,
      answeredPerSec: 38_000,
      acceptedPerSec: 37_000,
      percentiles: [
        { percentile: 50, ms: 3 },
        { percentile: 99, ms: 40 },
        { percentile: 99.9, ms: 60 },
        { percentile: 100, ms: 80 },
      ],
      curve: [
        { percentile: 0, ms: 0.5 },
        { percentile: 50, ms: 3 },
        { percentile: 99, ms: 40 },
        { percentile: 100, ms: 80 },
      ],
      timeline: [9_000, 9_500, 9_800, 9_700],
      errors: {},
      notes: [],
    },
    {
      name: 'hot <one auction>',
      description: '',
      offeredPerSec: 38_000,
      answeredPerSec: 30_000,
      acceptedPerSec: 29_000,
      percentiles: [
        { percentile: 50, ms: 5 },
        { percentile: 99, ms: 50 },
        { percentile: 99.9, ms: 70 },
        { percentile: 100, ms: 90 },
      ],
      curve: [
        { percentile: 0, ms: 1 },
        { percentile: 99, ms: 50 },
      ],
      timeline: [7_000, 8_000],
      errors: { unavailable: 3 },
      notes: ['a note'],
    },
  ],
  sweep: [
    { offeredPerSec: 1_000, answeredPerSec: 1_000, p99Ms: 4, ok: true },
    { offeredPerSec: 2_000, answeredPerSec: 2_000, p99Ms: 9, ok: false },
  ],
  peers: [
    {
      name: 'redis-always',
      description: 'Redis Lua <CAS>',
      durability: 'a power loss (fsync before the reply)',
      peak: {
        offeredPerSec: 16_000,
        answeredPerSec: 15_900,
        p50Ms: 1.5,
        p99Ms: 30,
        errors: {},
        cpuUsPerBid: { 'front door': 20, 'redis-server': 10, generator: 9, system: 30 },
      },
      search: { end: 'saturated', sustainedRate: 16_000, failedRate: 17_500, elapsedMs: 40_000 },
      atOurHalfPeak: {
        offeredPerSec: 19_000,
        answeredPerSec: 12_000,
        p50Ms: 300,
        p99Ms: 900,
        errors: {},
        cpuUsPerBid: null,
      },
      ours: 2.39,
    },
    { name: 'postgres-row-lock', skipped: 'DATABASE_URL is not set' },
  ],
  targets: [
    { name: 'acknowledged bids/s end to end', want: '>= 100,000', got: '38000', met: false },
    { name: 'vs Postgres', want: '>= 10x', got: 'skipped', met: null },
  ],
  line: {
    bidsPerSec: 38_000,
    p99Ms: 12,
    hotBidsPerSec: 30_000,
    fanoutP99Ms: 20,
    vsJetstreamPerBid: 2.53,
    vsPostgres: null,
  },
};

t.test('the terminal table and the HTML report show every scenario, peer and target', (t) => {
  const table = renderTable(run);
  t.match(table, /uniform \(peak\)\s+40,000\s+38,000\s+37,000\s+-\s+3 ms\s+40 ms/, 'a scenario row with its figures');
  t.match(table, /postgres-row-lock .*skipped: DATABASE_URL is not set/, 'a skipped peer says why');
  t.match(
    table,
    /redis-always\s+15,900\s+1\.50 ms\s+30 ms\s+30\.0\s+12,000 of 19,000\/s, p99 900 ms\s+2\.39x\s+saturated\s+a power loss/,
    'a peer: its peak, latency, CPU, the figures at our half peak, the ratio, how its search ended, its durability',
  );
  t.match(table, /acknowledged bids\/s end to end\s+>= 100,000\s+38000\s+NO/, 'a missed target is marked');
  t.match(table, /2,000\s+2,000\s+9 ms\s+no/, 'the sweep');

  const html = renderHtml(run);
  t.match(html, /^<!doctype html>/);
  t.notMatch(
    html,
    /<script|<link|src=|url\(|https?:\/\/(?!www\.w3\.org\/2000\/svg)/,
    'self-contained: no scripts, links or external resources',
  );
  t.equal(html.match(/<svg /g)?.length, 3, 'latency-percentile, throughput-over-time and sweep charts');
  t.match(html, /Latency by percentile/);
  t.match(html, /Answered bids per second over time/);
  t.match(html, /hot &#60;one auction&#62;/, 'names are escaped');
  t.notMatch(html, /hot <one auction>/);
  t.match(html, /<h2>Peers behind the same front door<\/h2>/);
  t.match(html, /Redis Lua &#60;CAS&#62;/, "each peer's design, escaped");
  t.match(html, /vsJetstreamPerBid&#34;:2\.53/, 'the JSON line is in it');
  t.notMatch(html, /uncommitted/, 'a run of a clean tree is not flagged');
  t.match(
    renderHtml({ ...run, dirty: true }),
    /commit abc1234 \(with uncommitted changes\)/,
    'a run of uncommitted code says so',
  );

  const chart = svgChart(
    't',
    [
      {
        name: 'a',
        points: [
          [0, 1],
          [1, 2],
        ],
      },
      {
        name: 'b',
        points: [
          [0, 3],
          [1, 4],
        ],
      },
    ],
    {
      xLabel: 'x',
      yLabel: 'y',
      xTicks: [
        [0, '0'],
        [1, '1'],
      ],
    },
  );
  t.equal(chart.match(/<path /g)?.length, 2, 'one line per series');
  t.match(chart, /M64\.0,/, 'the first point sits on the y axis');
  t.end();
});

t.test(
  'a fan-out receiver reads the version of a state frame without parsing it, and nothing from other frames',
  (t) => {
    const frame = (message: unknown) => Buffer.from(JSON.stringify(message));
    t.equal(stateVersion(frame({ type: 'auction.state', auctionId: 7, price: 1200, version: 31, endsAt: 1 })), 31);
    t.equal(stateVersion(frame({ type: 'auction.state', version: 1048576 })), 1048576);
    t.equal(stateVersion(frame({ type: 'bid.result', version: 31 })), -1, 'another message type');
    t.equal(stateVersion(frame({ type: 'auction.state', auctionId: 7 })), -1, 'no version');
    t.equal(stateVersion(Buffer.from('')), -1, 'empty frame');
    t.equal(stateVersion(Buffer.from('{"type":"ok"}')), -1, 'a frame shorter than the state prefix');
    t.end();
  },
);

t.test('the generator sends runs of bids per connection, each connection on the auctions it had before', (t) => {
  const connections = 200;
  const auctions = 2_000;
  const before = new Map<number, number[]>();
  const now = new Map<number, number[]>();
  for (let i = 0; i < connections * BIDS_PER_CONNECTION_RUN * 20; i++) {
    const old = i % connections;
    if (!before.has(old)) before.set(old, []);
    before.get(old)!.push((i * 7919) % auctions);
    const slot = bidSlot(i, connections, auctions);
    if (!now.has(slot.connection)) now.set(slot.connection, []);
    now.get(slot.connection)!.push(slot.auctionIndex);
  }
  t.same(now, before, 'every connection bids on the same auctions in the same order as one bid per connection did');
  for (let j = 1; j < BIDS_PER_CONNECTION_RUN; j++) t.equal(bidSlot(j, connections, auctions).connection, 0);
  t.equal(
    bidSlot(BIDS_PER_CONNECTION_RUN, connections, auctions).connection,
    1,
    'the next run goes to the next connection',
  );
  t.end();
});
