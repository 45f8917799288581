import t from 'tap';
import { cpuPerBid, cpuSnapshot, processCpuUs } from '../../bench/harness/cpu.js';
import { ListedRates, PeakSearch, runPeakSearch } from '../../bench/harness/peak-search.js';
import { renderHtml, renderTable, type BenchRun } from '../../bench/harness/report.js';

/** Runs a search against a system that sustains every rate up to `capacity`; the rates it offered, in order. */
function searchAgainst(search: PeakSearch | ListedRates, capacity: number, budgetSteps = Infinity): number[] {
  const offered: number[] = [];
  for (let rate = search.next(); rate !== null; rate = search.next()) {
    if (offered.length >= budgetSteps) {
      search.outOfTime();
      break;
    }
    offered.push(rate);
    search.record(rate, rate <= capacity);
  }
  return offered;
}

t.test('the peak search doubles, then bisects until it brackets the peak within 10%', (t) => {
  const search = new PeakSearch({ firstRate: 6_000, maxRate: 400_000, precision: 1.1 });
  const offered = searchAgainst(search, 19_600);
  t.same(offered.slice(0, 3), [6_000, 12_000, 24_000], 'doubling until a step fails');
  const { end, sustainedRate, failedRate } = search.outcome;
  t.equal(end, 'saturated');
  t.ok(sustainedRate! <= 19_600 && failedRate! > 19_600, `the peak lies between ${sustainedRate} and ${failedRate}`);
  t.ok(failedRate! <= sustainedRate! * 1.1, 'within 10%');
  t.ok(offered.length <= 8, `${offered.length} steps, not a 1.25x staircase's 8 to reach 20k and more to narrow`);
  t.equal(new Set(offered).size, offered.length, 'no rate is offered twice');

  const high = new PeakSearch({ firstRate: 6_000, maxRate: 400_000, precision: 1.1 });
  searchAgainst(high, 250_000);
  t.ok(high.outcome.sustainedRate! >= 250_000 / 1.1, 'a fast system is found as quickly (doubling)');
  t.end();
});

t.test(
  'runPeakSearch offers a near miss again, not a step far over capacity, and keeps the best sustained step',
  async (t) => {
    // A system that decides up to 10,000/s; the first step at 10,000 has a hiccup (decides 9,000) and comes good again.
    const offered: string[] = [];
    let hiccup = true;
    const step = (rate: number, again: boolean) => {
      offered.push(`${rate}${again ? ' again' : ''}`);
      const answered = rate === 10_000 && hiccup ? ((hiccup = false), 9_000) : Math.min(rate, 10_000);
      return Promise.resolve({ rate, answered });
    };
    const run = await runPeakSearch(new PeakSearch({ firstRate: 2_500, maxRate: 400_000, precision: 1.25 }), {
      step,
      sustained: (s) => s.answered >= 0.95 * s.rate,
      worthRetrying: (s) => s.answered >= 0.8 * s.rate,
      answeredPerSec: (s) => s.answered,
      startedAt: Date.now(),
      budgetMs: 60_000,
      stopping: () => false,
      say: () => undefined,
    });
    t.same(
      offered,
      ['2500', '5000', '10000', '10000 again', '20000', '15000', '12500', '12500 again'],
      '20,000 (half decided) and 15,000 (2/3) are not retried; 10,000 (90%) and 12,500 (80%) are',
    );
    t.same(run.peak, { rate: 10_000, answered: 10_000 });
    t.same(run.first, { rate: 2_500, answered: 2_500 });
    t.equal(run.outcome.end, 'saturated');

    const lines: string[] = [];
    const late = await runPeakSearch(new PeakSearch({ firstRate: 2_500, maxRate: 400_000, precision: 1.25 }), {
      step,
      sustained: () => true,
      worthRetrying: () => true,
      answeredPerSec: (s) => s.answered,
      startedAt: Date.now() - 120_000,
      budgetMs: 60_000,
      stopping: () => false,
      say: (line) => lines.push(line),
    });
    t.equal(late.peak, null, 'out of its budget before the first step: nothing offered');
    t.equal(late.outcome.end, 'budget');
    t.match(lines[0], 'stopped at its time budget (60 s) before 2500/s');
  },
);

t.test('the peak search says when it ran out of time, out of rates, or found nothing sustained', (t) => {
  const budget = new PeakSearch({ firstRate: 6_000, maxRate: 400_000, precision: 1.1 });
  t.same(searchAgainst(budget, 1_000_000, 3), [6_000, 12_000, 24_000]);
  t.equal(budget.outcome.end, 'budget', 'the budget ended it: not saturated');
  t.equal(budget.outcome.failedRate, null);

  const capped = new PeakSearch({ firstRate: 6_000, maxRate: 30_000, precision: 1.1 });
  t.same(searchAgainst(capped, 1_000_000), [6_000, 12_000, 24_000, 30_000]);
  t.equal(capped.outcome.end, 'max-rate', 'every rate it may offer was sustained');

  const slow = new PeakSearch({ firstRate: 6_000, maxRate: 400_000, precision: 1.1 });
  const offered = searchAgainst(slow, 100);
  t.equal(slow.outcome.end, 'saturated');
  t.equal(slow.outcome.sustainedRate, null, 'no rate sustained');
  t.ok(
    offered.every((rate, i) => i === 0 || rate < offered[i - 1]),
    `downwards only: ${offered.join(', ')}`,
  );

  const listed = new ListedRates([1_000, 2_000, 3_000]);
  t.same(searchAgainst(listed, 2_500), [1_000, 2_000, 3_000]);
  t.same(listed.outcome, { end: 'saturated', sustainedRate: 2_000, failedRate: 3_000 });
  const exhausted = new ListedRates([1_000, 2_000]);
  searchAgainst(exhausted, 5_000);
  t.equal(exhausted.outcome.end, 'max-rate');
  t.end();
});

t.test("a process's CPU time from /proc agrees with what the process itself counts", (t) => {
  const fromProc = processCpuUs(process.pid)!;
  const fromNode = process.cpuUsage();
  // Work until this process has used 200 ms of CPU by its own count, however loaded the machine is.
  let x = 0;
  while (process.cpuUsage(fromNode).user < 200_000) for (let i = 0; i < 100_000; i++) x += i;
  const used = process.cpuUsage(fromNode);
  const procDelta = processCpuUs(process.pid)! - fromProc;
  // /proc counts in clock ticks (10 ms); the other threads of this process add a little.
  t.ok(
    Math.abs(procDelta - (used.user + used.system)) < 60_000,
    `/proc ${procDelta} us, process.cpuUsage ${used.user + used.system} us (${x > 0})`,
  );
  t.equal(processCpuUs(2 ** 22 + 7), null, 'a process that is not there');
  t.end();
});

t.test('CPU per decided bid, by process and for the system without the generator', (t) => {
  const before = { gateway: 1_000_000, engine: 2_000_000, generator: 500_000 };
  const after = { gateway: 1_470_000, engine: 2_270_000, generator: 870_000 };
  t.same(cpuPerBid(before, after, 10_000, 'generator'), { gateway: 47, engine: 27, generator: 37, system: 74 });
  t.same(
    cpuPerBid({ ...before, audit: null }, { ...after, audit: 5 }, 10_000, 'generator'),
    { gateway: 47, engine: 27, generator: 37, audit: null, system: null },
    'a process not running at one end: unknown, and so is the system',
  );
  t.equal(cpuPerBid(before, after, 0, 'generator').system, null, 'no bids decided: no cost per bid');
  const snapshot = cpuSnapshot({ me: process.pid, none: undefined });
  t.ok(snapshot.me! > 0);
  t.equal(snapshot.none, null);
  t.end();
});

t.test('the table, the report and the JSON line show the cost of a bid and how the peak search ended', (t) => {
  const scenario = {
    name: 'uniform (peak)',
    description: '',
    offeredPerSec: 20_000,
    answeredPerSec: 19_800,
    acceptedPerSec: 19_000,
    percentiles: [
      { percentile: 50, ms: 3 },
      { percentile: 99, ms: 40 },
    ],
    curve: [],
    timeline: [],
    errors: {},
    notes: [],
    cpuUsPerBid: { gateway: 47.2, engine: 27, audit: 37.5, 'nats-server': 13.1, generator: 36.9, system: 124.8 },
  };
  const run: BenchRun = {
    bench: 'make-bench',
    at: '2026-12-01T00:00:00.000Z',
    commit: 'abc1234',
    node: 'v20.0.0',
    natsServer: 'nats-server: v2.9.10',
    machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24 },
    setup: {},
    scenarios: [scenario, { ...scenario, name: 'fan-out x10', cpuUsPerBid: undefined }],
    sweep: [],
    peakSearch: { end: 'saturated', sustainedRate: 19_500, failedRate: 20_250, budgetMs: 240_000, elapsedMs: 151_000 },
    peers: [],
    targets: [],
    line: {
      bidsPerSec: 19_800,
      p99Ms: 12,
      hotBidsPerSec: 19_000,
      fanoutP99Ms: 20,
      vsJetstreamPerBid: null,
      vsPostgres: null,
      peakSearch: 'saturated',
      cpuUsPerBid: 124.8,
      generatorCpuUsPerBid: 36.9,
    },
  };
  const table = renderTable(run);
  t.match(table, 'peak search saturated: 19,500/s sustained, 20,250/s not (151 s of its 240 s budget)');
  t.match(table, /scenario\s+gateway\s+engine\s+audit\s+nats-server\s+system\s+generator/);
  t.match(
    table,
    /uniform \(peak\)\s+47\.2\s+27\.0\s+37\.5\s+13\.1\s+124\.8\s+36\.9/,
    'each process, the system, the generator',
  );
  t.notMatch(table, /fan-out x10\s+-/, 'a scenario without a measured rate has no CPU row');
  const html = renderHtml(run);
  t.match(html, /<h2>CPU per decided bid<\/h2>/);
  t.match(html, /<td>124\.8<\/td>/);
  t.match(html, /cpuUsPerBid&#34;:124\.8/, 'the JSON line carries the system cost');
  const timedOut = renderTable({ ...run, peakSearch: { ...run.peakSearch!, end: 'budget', failedRate: null } });
  t.match(
    timedOut,
    'peak search ran out of time before it saturated (151 s of its 240 s budget): the peak may be higher',
  );
  t.end();
});
