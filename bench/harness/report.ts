import type { PercentilePoint } from './latency.js';
import type { CpuPerBid } from './cpu.js';
import type { PeakSearchEnd } from './peak-search.js';

export type ScenarioResult = {
  name: string;
  description: string;
  /** Offered (scheduled) rate; null for scenarios not driven by a rate. */
  offeredPerSec: number | null;
  answeredPerSec: number;
  acceptedPerSec: number;
  percentiles: PercentilePoint[];
  curve: PercentilePoint[];
  /** Answers per second over the measured phase, per 250 ms slot. */
  timeline: number[];
  errors: Record<string, number>;
  notes: string[];
  /** CPU microseconds per decided bid in the measured window, by process; `system` without the generator. */
  cpuUsPerBid?: CpuPerBid;
  /** Bids shed (`overloaded`) per second of the window, and the p99 of their answers (also counted in errors). */
  shedPerSec?: number;
  shedP99Ms?: number;
};

export type SweepStep = { offeredPerSec: number; answeredPerSec: number; p99Ms: number; ok: boolean };

export type Target = { name: string; want: string; got: string; met: boolean | null };

export type BenchRun = {
  bench: 'make-bench';
  at: string;
  commit: string;
  /** The working tree had uncommitted changes (null: unknown). */
  dirty?: boolean | null;
  node: string;
  natsServer: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number };
  setup: Record<string, unknown>;
  scenarios: ScenarioResult[];
  sweep: SweepStep[];
  /** How the peak search ended: saturated (bracketed within 10%), out of its budget, or out of rates. */
  peakSearch?: {
    end: PeakSearchEnd | null;
    sustainedRate: number | null;
    failedRate: number | null;
    budgetMs: number;
    elapsedMs: number;
  };
  /** The classic designs behind the same front door (bench/peers/), same generator, same run. */
  peers: PeerRun[];
  targets: Target[];
  line: {
    bidsPerSec: number;
    p99Ms: number;
    hotBidsPerSec: number;
    fanoutP99Ms: number;
    vsJetstreamPerBid: number | null;
    vsPostgres: number | null;
    /** Our peak over each Redis peer's (older runs lack them). */
    vsRedisAlways?: number | null;
    vsRedisEverysec?: number | null;
    /** How the peak search ended (older runs lack it). */
    peakSearch?: PeakSearchEnd | null;
    /** CPU microseconds per decided bid at the peak: the system's (no generator), and the generator's. */
    cpuUsPerBid?: number | null;
    generatorCpuUsPerBid?: number | null;
    /** p99 of one loopback write per subscriber (bench/harness/fanout-floor.ts; older runs lack it). */
    fanoutFloorP99Ms?: number;
    /** The same as cpuUsPerBid; and the highest swept rate with p99 <= 5 ms, 0 if none. */
    systemCpuUsPerBid?: number | null;
    sweepP99Under5msRate?: number;
  };
};

/** A peer's figures at one step: the offered rate, what it decided, latency and the CPU a bid cost. */
export type PeerStep = {
  offeredPerSec: number;
  answeredPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: Record<string, number>;
  /** CPU us per decided bid by process; `system` is every process but the generator. */
  cpuUsPerBid: Record<string, number | null> | null;
};

export type PeerRun =
  | {
      name: string;
      description: string;
      /** What an acknowledged bid survives in this design (a process crash, a power loss). */
      durability: string;
      /** The best sustained step of its peak search (null: not even the first rate was sustained). */
      peak: PeerStep | null;
      search: { end: PeakSearchEnd | null; sustainedRate: number | null; failedRate: number | null; elapsedMs: number };
      /** The same offered rate as our half-peak step. */
      atOurHalfPeak: PeerStep | null;
      /** Our peak over this peer's (null: no sustained peak). */
      ours: number | null;
    }
  | { name: string; skipped: string };

const fmt = (n: number, digits = 2) => (Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(digits));
const ms = (n: number) => `${fmt(n, n < 10 ? 2 : 1)} ms`;
const pct = (p: PercentilePoint[], at: number) => p.find((x) => x.percentile === at)?.ms ?? 0;

function textTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The processes whose CPU a bid costs, in the order the tables show them. */
const CPU_COLUMNS = ['gateway', 'engine', 'audit', 'nats-server', 'system', 'generator'];
const us = (n: number | null | undefined) => (n === null || n === undefined ? '-' : n.toFixed(1));

/** Rows of the CPU table: each scenario measured with a rate, CPU us per decided bid by process. */
function cpuRows(run: BenchRun): string[][] {
  return run.scenarios
    .filter((s) => s.cpuUsPerBid)
    .map((s) => [s.name, ...CPU_COLUMNS.map((column) => us(s.cpuUsPerBid![column]))]);
}

/** One sentence on how the peak search ended. */
export function peakSearchSentence(run: BenchRun): string | null {
  const p = run.peakSearch;
  if (!p) return null;
  const took = `${Math.round(p.elapsedMs / 1_000)} s of its ${Math.round(p.budgetMs / 1_000)} s budget`;
  if (p.end === 'saturated')
    return `peak search saturated: ${p.sustainedRate === null ? 'no rate' : `${fmt(p.sustainedRate)}/s`} sustained, ${p.failedRate === null ? '-' : `${fmt(p.failedRate)}/s`} not (${took})`;
  if (p.end === 'budget') return `peak search ran out of time before it saturated (${took}): the peak may be higher`;
  return `peak search reached the highest rate it offers (${took}): the peak may be higher`;
}

const PEER_HEADERS = [
  'peer',
  'peak/s',
  'p50',
  'p99',
  'CPU us/bid',
  'at our half peak',
  'ours / peer',
  'search',
  'durability',
];

/** Rows of the peers' table, for the terminal and the HTML report alike. */
function peerRows(run: BenchRun): string[][] {
  return run.peers.map((p) => {
    if ('skipped' in p) return [p.name, '-', '-', '-', '-', '-', '-', '-', `skipped: ${p.skipped}`];
    const at = p.atOurHalfPeak;
    return [
      p.name,
      p.peak ? fmt(p.peak.answeredPerSec) : 'none',
      p.peak ? ms(p.peak.p50Ms) : '-',
      p.peak ? ms(p.peak.p99Ms) : '-',
      us(p.peak?.cpuUsPerBid?.system),
      at ? `${fmt(at.answeredPerSec)} of ${fmt(at.offeredPerSec)}/s, p99 ${ms(at.p99Ms)}` : '-',
      p.ours === null ? '-' : `${p.ours}x`,
      p.search.end === 'saturated' ? 'saturated' : p.search.end === 'budget' ? 'out of time' : String(p.search.end),
      p.durability,
    ];
  });
}

/** The terminal summary: scenarios, CPU per bid, the peak search, sweep, peers, targets. */
export function renderTable(run: BenchRun): string {
  const out: string[] = [];
  out.push(
    textTable(
      ['scenario', 'offered/s', 'answered/s', 'accepted/s', 'shed/s', 'p50', 'p99', 'p99.9', 'max', 'errors'],
      run.scenarios.map((s) => [
        s.name,
        s.offeredPerSec === null ? '-' : fmt(s.offeredPerSec),
        fmt(s.answeredPerSec),
        fmt(s.acceptedPerSec),
        s.shedPerSec ? fmt(s.shedPerSec) : '-',
        ms(pct(s.percentiles, 50)),
        ms(pct(s.percentiles, 99)),
        ms(pct(s.percentiles, 99.9)),
        ms(pct(s.percentiles, 100)),
        String(Object.values(s.errors).reduce((a, b) => a + b, 0)),
      ]),
    ),
  );
  const search = peakSearchSentence(run);
  if (search) out.push('', search);
  const cpu = cpuRows(run);
  if (cpu.length) {
    out.push('', 'CPU per decided bid (us, measured window; system = every process but the generator):');
    out.push(textTable(['scenario', ...CPU_COLUMNS], cpu));
  }
  if (run.sweep.length) {
    out.push('', 'rate sweep (uniform, p99 <= 5 ms?):');
    out.push(
      textTable(
        ['offered/s', 'answered/s', 'p99', 'meets'],
        run.sweep.map((s) => [fmt(s.offeredPerSec), fmt(s.answeredPerSec), ms(s.p99Ms), s.ok ? 'yes' : 'no']),
      ),
    );
  }
  if (run.peers.length) {
    out.push('', 'peers behind the same front door (bench/peers/: same frames, tokens, generator; same run):');
    out.push(textTable(PEER_HEADERS, peerRows(run)));
  }
  out.push('', 'targets:');
  out.push(
    textTable(
      ['target', 'want', 'got', 'met'],
      run.targets.map((t) => [t.name, t.want, t.got, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
    ),
  );
  return out.join('\n');
}

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

type Series = { name: string; points: [number, number][] };

/** An inline SVG line chart (no scripts, no external files). */
export function svgChart(
  title: string,
  series: Series[],
  options: { xLabel: string; yLabel: string; xTicks: [number, string][]; yLog?: boolean },
): string {
  const W = 720,
    H = 320,
    L = 64,
    R = 150,
    T = 28,
    B = 44;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]).filter((y) => !options.yLog || y > 0);
  const xMin = Math.min(...xs, ...options.xTicks.map((t) => t[0]));
  const xMax = Math.max(...xs, ...options.xTicks.map((t) => t[0]), xMin + 1);
  const yMinRaw = options.yLog ? Math.max(0.01, Math.min(...ys)) : 0;
  const yMaxRaw = Math.max(...ys, options.yLog ? yMinRaw * 10 : 1);
  const yt = (y: number) => (options.yLog ? Math.log10(Math.max(y, yMinRaw)) : y);
  const [y0, y1] = options.yLog
    ? [Math.floor(Math.log10(yMinRaw)), Math.ceil(Math.log10(yMaxRaw))]
    : [0, yMaxRaw * 1.1];
  const px = (x: number) => L + ((x - xMin) / (xMax - xMin)) * (W - L - R);
  const py = (y: number) => H - B - ((yt(y) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const yTicks: [number, string][] = options.yLog
    ? Array.from({ length: y1 - y0 + 1 }, (_, i) => [10 ** (y0 + i), fmt(10 ** (y0 + i))])
    : Array.from({ length: 5 }, (_, i) => [(y1 * i) / 4, fmt(Math.round((y1 * i) / 4))]);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escape(title)}">`,
    `<text x="${L}" y="18" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`,
    ...options.xTicks.map(
      ([x, label]) =>
        `<line x1="${px(x)}" y1="${T}" x2="${px(x)}" y2="${H - B}" stroke="#eee"/><text x="${px(x)}" y="${H - B + 16}" font-size="11" text-anchor="middle">${escape(label)}</text>`,
    ),
    ...yTicks.map(
      ([y, label]) =>
        `<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#eee"/><text x="${L - 6}" y="${py(y) + 4}" font-size="11" text-anchor="end">${escape(label)}</text>`,
    ),
    `<text x="${(L + W - R) / 2}" y="${H - 8}" font-size="12" text-anchor="middle">${escape(options.xLabel)}</text>`,
    `<text x="14" y="${(T + H - B) / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">${escape(options.yLabel)}</text>`,
    ...series.map((s, i) => {
      const color = COLORS[i % COLORS.length];
      const d = s.points
        .filter((p) => !options.yLog || p[1] > 0)
        .map((p, j) => `${j ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`)
        .join('');
      return `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/><rect x="${W - R + 10}" y="${T + i * 18}" width="12" height="3" fill="${color}"/><text x="${W - R + 26}" y="${T + i * 18 + 5}" font-size="11">${escape(s.name)}</text>`;
    }),
    '</svg>',
  ];
  return parts.join('\n');
}

/** Percentile p as HdrHistogram plots it: 1/(1-p), on a log scale. */
const nines = (p: number) => Math.log10(1 / (1 - Math.min(p, 99.9999) / 100));

/** A self-contained HTML report: tables plus latency-percentile and throughput-over-time charts. */
export function renderHtml(run: BenchRun): string {
  const latencyChart = svgChart(
    'Latency by percentile',
    run.scenarios
      .filter((s) => s.curve.length)
      .map((s) => ({ name: s.name, points: s.curve.map((p) => [nines(p.percentile), p.ms] as [number, number]) })),
    {
      xLabel: 'percentile',
      yLabel: 'latency (ms, log)',
      yLog: true,
      xTicks: [
        [0, '0%'],
        [1, '90%'],
        [2, '99%'],
        [3, '99.9%'],
        [4, '99.99%'],
        [5, '99.999%'],
      ],
    },
  );
  const withTimeline = run.scenarios.filter((s) => s.timeline.length);
  const longest = Math.max(1, ...withTimeline.map((s) => s.timeline.length));
  const throughputChart = svgChart(
    'Answered bids per second over time',
    withTimeline.map((s) => ({
      name: s.name,
      points: s.timeline.map((n, i) => [(i + 1) * 0.25, n * 4] as [number, number]),
    })),
    {
      xLabel: 'seconds into the measured phase',
      yLabel: 'bids/s',
      xTicks: Array.from({ length: Math.ceil(longest / 4) + 1 }, (_, i) => [i, String(i)] as [number, string]),
    },
  );
  const sweepChart = run.sweep.length
    ? svgChart(
        'Rate sweep: p99 by offered rate',
        [
          { name: 'p99', points: run.sweep.map((s) => [s.offeredPerSec, s.p99Ms] as [number, number]) },
          { name: '5 ms', points: run.sweep.map((s) => [s.offeredPerSec, 5] as [number, number]) },
        ],
        {
          xLabel: 'offered bids/s',
          yLabel: 'p99 (ms, log)',
          yLog: true,
          xTicks: run.sweep.map((s) => [s.offeredPerSec, fmt(s.offeredPerSec)] as [number, string]),
        },
      )
    : '';
  const search = peakSearchSentence(run);
  const cpu = cpuRows(run);
  const table = (headers: string[], rows: string[][]) =>
    `<table><tr>${headers.map((h) => `<th>${escape(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${escape(c)}</td>`).join('')}</tr>`).join('')}</table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>make bench ${escape(run.at)}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.no{color:#b00;font-weight:bold}pre{background:#f6f6f6;padding:8px;overflow:auto}</style>
</head><body>
<h1>Auction engine benchmark</h1>
<p>${escape(run.at)} · commit ${escape(run.commit)}${run.dirty ? ' (with uncommitted changes)' : ''} · Node ${escape(run.node)} · ${escape(run.natsServer)} · ${run.machine.cpus} × ${escape(run.machine.cpuModel)}, ${run.machine.memoryGiB} GiB</p>
<pre>${escape(JSON.stringify(run.line))}</pre>
<h2>Targets</h2>
${table(
  ['target', 'want', 'got', 'met'],
  run.targets.map((t) => [t.name, t.want, t.got, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
)}
<h2>Scenarios</h2>
${table(
  ['scenario', 'offered/s', 'answered/s', 'accepted/s', 'p50', 'p99', 'p99.9', 'max', 'errors', 'notes'],
  run.scenarios.map((s) => [
    s.name,
    s.offeredPerSec === null ? '-' : fmt(s.offeredPerSec),
    fmt(s.answeredPerSec),
    fmt(s.acceptedPerSec),
    ms(pct(s.percentiles, 50)),
    ms(pct(s.percentiles, 99)),
    ms(pct(s.percentiles, 99.9)),
    ms(pct(s.percentiles, 100)),
    JSON.stringify(s.errors),
    s.notes.join(' '),
  ]),
)}
${search ? `<p>${escape(search)}</p>` : ''}
${
  cpu.length
    ? `<h2>CPU per decided bid</h2><p>Microseconds of CPU (user + system, every thread, from /proc) per bid decided in the measured window; system is every process but the load generator.</p>${table(['scenario', ...CPU_COLUMNS], cpu)}`
    : ''
}
${latencyChart}
${throughputChart}
${
  run.sweep.length
    ? `<h2>Rate sweep</h2>${table(
        ['offered/s', 'answered/s', 'p99', 'p99 <= 5 ms'],
        run.sweep.map((s) => [fmt(s.offeredPerSec), fmt(s.answeredPerSec), ms(s.p99Ms), s.ok ? 'yes' : 'no']),
      )}${sweepChart}`
    : ''
}
${
  run.peers.length
    ? `<h2>Peers behind the same front door</h2><p>The classic designs of bench/peers/, each behind a small uWebSockets.js server speaking the same bid frames and tokens, driven by the same generator in the same run.</p>${table(PEER_HEADERS, peerRows(run))}${table(
        ['peer', 'design'],
        run.peers.map((p) => [p.name, 'skipped' in p ? '' : p.description]),
      )}`
    : ''
}
<h2>Set-up</h2>
<pre>${escape(JSON.stringify(run.setup, null, 2))}</pre>
</body></html>
`;
}
