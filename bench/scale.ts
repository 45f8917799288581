import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Tokens } from '../gateway/auth.js';
import { adminSubjects, decode, encode, EngineClient } from '../protocol/index.js';
import type { SnapshotReply } from '../protocol/operations.js';
import { shardFile } from '../audit/shard-db.js';
import { BidLoad } from '../testkit/index.js';
import { BidJobs, type BidRun } from './harness/bid-jobs.js';
import { cpuSnapshot } from './harness/cpu.js';
import { searchQuery } from './harness/catalog.js';
import { replaceDocSection } from './harness/docs-section.js';
import { fillAuctions } from './harness/fill.js';
import { Latency } from './harness/latency.js';
import { rssBytes } from './harness/rss.js';
import { ScaleCluster, type EngineName } from './harness/scale-cluster.js';
import { saveResult } from './results.js';

/**
 * `make bench-scale` (issue 22): ten million open auctions through the real
 * processes. A fresh cluster (NATS, engines `a` and `b` primaries of shards
 * 0-3 and 4-7 with replicas `ra` and `rb`, the audit of every shard, a
 * gateway) first lists `--baseline` auctions and measures bids, searches and
 * memory there; then lists the rest through the engines' command path and
 * measures the same at full size, plus snapshots under load, a SIGKILLed
 * primary, a cold restart of a shard group from snapshots and the log, and
 * the operators' `auctionctl status` and `audit verify`. Prints a table and
 * ends with the JSON line {"auctions","engineBytesPerAuction","failoverMs",
 * "restartMs","snapshotStallMs","searchP99Ms","bidP99Ms"}; writes
 * bench/results/scale.json and the docs/BENCHMARKS.md section.
 */
const { values } = parseArgs({
  options: {
    auctions: { type: 'string', default: '10000000' },
    baseline: { type: 'string', default: '10000' },
    rate: { type: 'string', default: '5000' },
    'warmup-ms': { type: 'string', default: '2000' },
    'measure-ms': { type: 'string', default: '10000' },
    'hot-auctions': { type: 'string', default: '100' },
    'random-sample': { type: 'string', default: '200000' },
    /** Full requests of creations in flight per shard while listing (a gateway allows 8). */
    'fill-in-flight': { type: 'string', default: '1' },
    /**
     * Creations per second while listing (0: as fast as answered). At full speed (45-60k/s) every
     * run so far lost its leases everywhere after 4-5M auctions (issue 17): this measures the system
     * at ten million, not the listing's overload.
     */
    'fill-rate': { type: 'string', default: '20000' },
    reads: { type: 'string', default: '300' },
    out: { type: 'string', default: 'bench/results/scale.json' },
    'no-docs': { type: 'boolean', default: false },
    /** Keep the audit's shard files in this directory after the run (to profile its queries on them); default: removed. */
    'audit-dir': { type: 'string', default: '' },
  },
});
const SHARDS = 8;
const AUCTIONS = Number(values.auctions);
const BASELINE = Number(values.baseline);
const RATE = Number(values.rate);
const WARMUP_MS = Number(values['warmup-ms']);
const MEASURE_MS = Number(values['measure-ms']);
const READS = Number(values.reads);
if (AUCTIONS % SHARDS || BASELINE % SHARDS || BASELINE >= AUCTIONS)
  throw new Error(`--auctions and --baseline are multiples of ${SHARDS}, the baseline the smaller`);
/** Room for every auction of a shard and a margin: the capacity is a power of two, its RSS only what is touched. */
const AUCTIONS_MAX = 2 ** Math.ceil(Math.log2((AUCTIONS / SHARDS) * 1.05));
const say = (line: string) => process.stderr.write(`${line}\n`);
const began = Date.now();
const elapsed = () => `${((Date.now() - began) / 1_000).toFixed(0)} s`;
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

const secret = 'bench-secret-0123456789abcdef';
const tokens = new Tokens(secret, 6 * 3_600_000);
say(`bench-scale: ${AUCTIONS.toLocaleString()} auctions on ${SHARDS} shards (capacity ${AUCTIONS_MAX} each)`);
const cluster = await ScaleCluster.start(SHARDS, AUCTIONS_MAX, secret, values['audit-dir'] || undefined);
process.once('SIGINT', () => {
  say('\nSIGINT: stopping every process of the run');
  void cluster.close().then(() => process.exit(130));
});
const client = new EngineClient(cluster.nc, 30_000);
const bidJobs = new BidJobs(cluster.gateway.wsUrl, tokens);
const shardList = Array.from({ length: SHARDS }, (_, s) => s);
const pids = (): Record<string, number | undefined> => ({
  ...Object.fromEntries(Object.entries(cluster.engines).map(([name, e]) => [`engine ${name}`, e.pid])),
  audit: cluster.audit.pid,
  gateway: cluster.gateway.pid,
  'nats-server': cluster.nats.pid,
});
/** Each process's share of one core over a window (CPU time / wall time), the bench's own (the load generator) included. */
async function cpuShares<T>(work: () => Promise<T>): Promise<{ result: T; cpu: Record<string, number | null> }> {
  const processes = { ...pids(), 'bench (generator)': process.pid };
  const before = cpuSnapshot(processes);
  const t0 = performance.now();
  const result = await work();
  const wallUs = (performance.now() - t0) * 1_000;
  const after = cpuSnapshot(processes);
  const cpu = Object.fromEntries(
    Object.keys(processes).map((name) => {
      const [start, end] = [before[name], after[name]];
      return [
        name,
        start === null || end === null || end === undefined ? null : Math.round(((end - start) / wallUs) * 100),
      ];
    }),
  );
  return { result, cpu };
}
const rssAll = () => Object.fromEntries(Object.entries(pids()).map(([name, pid]) => [name, rssBytes(pid) ?? 0]));

/** Every id of the run, by shard (the baseline's first). */
const ids: Float64Array[][] = shardList.map(() => []);
const pickIds = (n: number, from = 0): number[] => {
  const out: number[] = [];
  const all = ids.map((chunks) => chunks.slice(from));
  for (let i = 0; out.length < n; i++) {
    const shard = i % SHARDS;
    const chunks = all[shard];
    const total = chunks.reduce((a, c) => a + c.length, 0);
    let k = Math.floor(Math.random() * total);
    for (const c of chunks) {
      if (k < c.length) {
        out.push(c[k]);
        break;
      }
      k -= c.length;
    }
  }
  return out;
};

async function fill(perShard: number, firstLot: number): Promise<number> {
  const started = Date.now();
  let lastSaid = started;
  const chunks = await fillAuctions(client, shardList, perShard, {
    inFlightPerShard: Number(values['fill-in-flight']),
    ratePerSec: Number(values['fill-rate']),
    firstLot,
    endsAfterS: 12 * 3_600,
    onProgress: (created) => {
      if (Date.now() - lastSaid < 10_000) return;
      lastSaid = Date.now();
      say(
        `  ${elapsed()}: ${created.toLocaleString()} listed, ${Math.round((created * 1_000) / (lastSaid - started))}/s`,
      );
    },
  });
  chunks.forEach((c, shard) => ids[shard].push(c));
  return Date.now() - started;
}

type Reads = {
  searchP99Ms: number;
  searchP50Ms: number;
  historyP99Ms: number;
  historyP50Ms: number;
  failed: number;
  /** The three slowest searches and their queries: p99 of 300 is about the third slowest, so say which they were. */
  slowestSearches: string[];
  /** What each process spent while the searches ran (the audit's read workers are in its figure). */
  searchCpuPercent: Record<string, number | null>;
};

/** Sequential searches and bid histories through the gateway's HTTP API: their latency, and any answer not 200. */
async function reads(bidOn: number[], lots: number): Promise<Reads> {
  const search = new Latency();
  const history = new Latency();
  let failed = 0;
  const searches: { ms: number; q: string }[] = [];
  const get = async (latency: Latency, path: string) => {
    const t0 = performance.now();
    const response = await fetch(cluster.gateway.url + path);
    await response.arrayBuffer();
    const t1 = performance.now();
    latency.record(t0, t1);
    if (latency === search) searches.push({ ms: t1 - t0, q: decodeURIComponent(path.slice(path.indexOf('q=') + 2)) });
    if (response.status !== 200) {
      if (failed++ < 3) say(`  GET ${path}: ${response.status}`);
    }
  };
  const { cpu: searchCpuPercent } = await cpuShares(async () => {
    for (let i = 0; i < READS; i++) await get(search, `/v1/auctions?q=${encodeURIComponent(searchQuery(i, lots))}`);
  });
  for (let i = 0; i < READS; i++) await get(history, `/v1/auctions/${bidOn[i % bidOn.length]}/bids?limit=50`);
  return {
    searchP50Ms: search.ms(50),
    searchP99Ms: search.ms(99),
    historyP50Ms: history.ms(50),
    historyP99Ms: history.ms(99),
    failed,
    slowestSearches: searches
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 3)
      .map((s) => `${s.ms.toFixed(1)} ms "${s.q}"`),
    searchCpuPercent,
  };
}

const bidFigures = (run: BidRun) => ({
  p50Ms: run.latency.ms(50),
  p99Ms: run.latency.ms(99),
  maxMs: run.latency.ms(100),
  decidedPerSec: run.decidedPerSec,
  errors: run.errors,
});

async function bidsOn(label: string, auctions: number[]) {
  const { result: run, cpu } = await cpuShares(() => bidJobs.run(auctions, RATE, WARMUP_MS, MEASURE_MS));
  const figures = { ...bidFigures(run), cpuPercent: cpu };
  say(
    `  ${elapsed()}: bids ${label}: ${figures.decidedPerSec}/s decided, p50 ${figures.p50Ms} ms, p99 ${figures.p99Ms} ms, max ${figures.maxMs} ms${Object.keys(run.errors).length ? `, errors ${JSON.stringify(run.errors)} ${JSON.stringify(run.errorSamples)}` : ''}; CPU % of a core ${JSON.stringify(cpu)}`,
  );
  return figures;
}

/** How long a CLI run of auctionctl takes, and whether it succeeded. */
async function auctionctl(...args: string[]): Promise<{ ms: number; code: number; out: string }> {
  const t0 = Date.now();
  const run = promisify(execFile);
  const script = new URL('../ctl/auctionctl.js', import.meta.url).pathname;
  const credentials = cluster.nats.credentials('admin');
  try {
    const { stdout } = await run(
      process.execPath,
      [
        script,
        '--nats',
        cluster.nats.url,
        '--nats-user',
        credentials.NATS_USER,
        '--nats-password',
        credentials.NATS_PASSWORD,
        '--timeout-ms',
        '10000',
        ...args,
      ],
      { maxBuffer: 64 << 20 },
    );
    return { ms: Date.now() - t0, code: 0, out: stdout };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { ms: Date.now() - t0, code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function filesBytes(dir: string, match: (name: string) => boolean): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += filesBytes(path, match);
    else if (match(entry.name)) total += statSync(path).size;
  }
  return total;
}

function auditRows(): { auctions: number; bids: number } {
  let auctions = 0;
  let bids = 0;
  for (const shard of shardList) {
    const db = new Database(shardFile(cluster.audit.dataDir, shard), { readonly: true, fileMustExist: true });
    try {
      auctions += (db.prepare('SELECT count(*) AS n FROM auctions').get() as { n: number }).n;
      bids += (db.prepare('SELECT count(*) AS n FROM bids').get() as { n: number }).n;
    } finally {
      db.close();
    }
  }
  return { auctions, bids };
}

/** The processes' output dies with them: kept in a temporary directory, for reading what a run saw (roles, stalls). */
function saveLogs(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const [name, p] of [
    ...Object.entries(cluster.engines),
    ['audit', cluster.audit],
    ['gateway', cluster.gateway],
    ['nats-server', cluster.nats],
  ] as const)
    writeFileSync(join(dir, `${name}.log`), p.log);
  return dir;
}

const engineOf = (shard: number): EngineName => ScaleCluster.primaryOf(shard, SHARDS);
async function auctionsLiveBy(): Promise<Record<string, number>> {
  const by: Record<string, number> = {};
  for (const c of await cluster.copies()) by[c.engine] = (by[c.engine] ?? 0) + c.auctionsLive;
  return by;
}

try {
  // --- the baseline -------------------------------------------------------------------------
  await cluster.settled(60_000, say);
  await fill(BASELINE / SHARDS, 0);
  await cluster.settled(120_000, say);
  say(`  ${elapsed()}: ${BASELINE.toLocaleString()} auctions listed`);
  const hot = pickIds(Number(values['hot-auctions']));
  const small = {
    random: await bidsOn(`at ${BASELINE} auctions, random`, pickIds(Math.min(BASELINE, 20_000))),
    hot: await bidsOn(`at ${BASELINE} auctions, on ${hot.length} hot ones`, hot),
    reads: await reads(hot, BASELINE),
  };
  await cluster.settled(120_000, say);
  const rssSmall = rssAll();
  const memorySmall = await cluster.engineMemory();
  const liveSmall = await auctionsLiveBy();
  say(`  reads at ${BASELINE}: ${JSON.stringify(small.reads)}`);

  // --- the fill -----------------------------------------------------------------------------
  const fillMs = await fill((AUCTIONS - BASELINE) / SHARDS, BASELINE);
  const listedPerSec = Math.round(((AUCTIONS - BASELINE) * 1_000) / fillMs);
  say(`  ${elapsed()}: ${AUCTIONS.toLocaleString()} listed in ${(fillMs / 1_000).toFixed(0)} s (${listedPerSec}/s)`);
  const fillStarted = Date.now() - fillMs;
  await cluster.settled(1_200_000, say);
  const catchUpMs = Date.now() - fillStarted;
  const auditPerSec = Math.round(((AUCTIONS - BASELINE) * 1_000) / catchUpMs);
  say(`  ${elapsed()}: replicas and audit at the log's end ${(catchUpMs / 1_000).toFixed(0)} s after the fill began`);
  const rssLarge = rssAll();
  const memoryLarge = await cluster.engineMemory();
  say(
    `  engines' V8 memory (MiB): ${JSON.stringify(Object.fromEntries(Object.entries(memoryLarge).map(([k, m]) => [k, m && { heapUsed: mib(m.heapUsed), heapTotal: mib(m.heapTotal), external: mib(m.external) }])))}`,
  );
  const liveLarge = await auctionsLiveBy();
  const bytesPerAuction = Object.fromEntries(
    (['a', 'b', 'ra', 'rb'] as const).map((name) => [
      name,
      Math.round(
        ((rssLarge[`engine ${name}`] ?? 0) - (rssSmall[`engine ${name}`] ?? 0)) /
          Math.max(1, (liveLarge[name] ?? 0) - (liveSmall[name] ?? 0)),
      ),
    ]),
  );
  say(`  RSS (MiB): ${JSON.stringify(Object.fromEntries(Object.entries(rssLarge).map(([k, v]) => [k, mib(v)])))}`);
  say(`  engine bytes per auction (RSS growth / auctions added): ${JSON.stringify(bytesPerAuction)}`);

  // --- bids, reads and the operators' tools at full size --------------------------------------------
  const randomLarge = pickIds(Number(values['random-sample']), 1);
  const large = {
    random: await bidsOn(`at ${AUCTIONS} auctions, random`, randomLarge),
    hot: await bidsOn(`at ${AUCTIONS} auctions, on the same ${hot.length} hot ones`, hot),
    reads: await reads([...hot, ...randomLarge.slice(0, 200)], AUCTIONS),
  };
  say(`  reads at ${AUCTIONS}: ${JSON.stringify(large.reads)}`);
  const status = await auctionctl('status', '--json');
  say(`  ${elapsed()}: auctionctl status: exit ${status.code} in ${status.ms} ms`);

  // --- snapshots under load ---------------------------------------------------------------------
  const snapshots: { shard: number; stallMs: number; ms: number; bytes: number }[] = [];
  const underSnapshots = bidJobs.run(randomLarge, RATE, WARMUP_MS, MEASURE_MS + SHARDS * 1_500);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS + 1_000));
  for (const shard of shardList) {
    const reply = decode(
      (await cluster.nc.request(adminSubjects.engine(shard), encode({ op: 'snapshot' }), { timeout: 60_000 })).data,
    ) as SnapshotReply;
    const dir = join(cluster.engines[engineOf(shard)].dataDir, `shard-${shard}`);
    const file = readdirSync(dir)
      .filter((f) => f.endsWith('.bin'))
      .sort()
      .pop();
    snapshots.push({
      shard,
      stallMs: reply.stallMs,
      ms: reply.ms,
      bytes: file ? statSync(join(dir, file)).size : 0,
    });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  const duringSnapshots = bidFigures(await underSnapshots);
  const snapshotStallMs = Math.max(...snapshots.map((s) => s.stallMs));
  say(`  ${elapsed()}: snapshots: ${JSON.stringify(snapshots)}; bids meanwhile ${JSON.stringify(duringSnapshots)}`);

  // --- a primary SIGKILLed ------------------------------------------------------------------
  // Whichever copy serves shard 0 now (a role change earlier in the run may have moved it), and its pair.
  const servingCopies = (await cluster.copies()).filter((c) => c.status === 'serving');
  const victim = (servingCopies.find((c) => c.shard === 0)?.engine ?? engineOf(0)) as EngineName;
  const standby = ScaleCluster.pairOf(victim);
  const victimShards = servingCopies.filter((c) => c.engine === victim).map((c) => c.shard);
  const load = new BidLoad(cluster.nc, 0, Array.from(ids[0][1].subarray(0, 20)), 1_000);
  load.start(8);
  await load.untilAnswered(500);
  const tookOver = Promise.all(victimShards.map((s) => cluster.engines[standby].waitForRole(s, 'serving')));
  await cluster.engines[victim].kill();
  await tookOver;
  await load.untilAnswered(200);
  await load.stop();
  const failoverMs = Math.max(0, ...load.outagesMs);
  say(`  ${elapsed()}: ${victim} SIGKILLed: clients saw ${load.outagesMs.join(' + ') || 0} ms without a primary`);
  // It comes back as the standby: from its snapshots and the log's tail, following again.
  const rejoinFrom = cluster.engines[victim].outputPosition;
  const rejoinStarted = Date.now();
  await cluster.engines[victim].launch();
  await Promise.all(victimShards.map((s) => cluster.engines[victim].waitForRole(s, 'following', rejoinFrom, 600_000)));
  const standbyRestartMs = Date.now() - rejoinStarted;
  say(`  ${elapsed()}: ${victim} restarted and following again in ${standbyRestartMs} ms`);

  // --- a cold restart: both copies of the second half die, one comes back ------------------------------
  const cold: EngineName[] = ['b', 'rb'];
  await Promise.all(cold.map((name) => cluster.engines[name].kill()));
  const coldFrom = cluster.engines.b.outputPosition;
  const coldStarted = Date.now();
  await cluster.engines.b.launch();
  await Promise.all(
    shardList
      .filter((s) => engineOf(s) === 'b')
      .map((s) => cluster.engines.b.waitForRole(s, 'serving', coldFrom, 600_000)),
  );
  const restartMs = Date.now() - coldStarted;
  say(`  ${elapsed()}: b restarted cold (its replica dead too) and serving in ${restartMs} ms`);
  await cluster.engines.rb.launch();
  await cluster.settled(600_000, say);

  // --- the audit --------------------------------------------------------------------------------
  const rows = auditRows();
  const auditBytes = filesBytes(cluster.audit.dataDir, (f) => f.includes('.sqlite'));
  const verify = await auctionctl('audit', 'verify', '--json');
  say(
    `  ${elapsed()}: audit verify: exit ${verify.code} in ${verify.ms} ms${verify.code ? `: ${verify.out.slice(0, 2_000)}` : ''}`,
  );
  const streamBytes = filesBytes(cluster.nats.storeDir, () => true);

  const line = {
    auctions: liveLarge.a + liveLarge.b,
    engineBytesPerAuction: Math.max(bytesPerAuction.a, bytesPerAuction.b),
    failoverMs,
    restartMs,
    snapshotStallMs,
    searchP99Ms: large.reads.searchP99Ms,
    bidP99Ms: large.random.p99Ms,
  };
  const targets = [
    ['failover <= 2,000 ms', failoverMs <= 2_000],
    ['snapshot stall <= 50 ms', snapshotStallMs <= 50],
    ['engine <= 64 bytes per auction', line.engineBytesPerAuction <= 64],
    ['search and history p99 <= 50 ms', large.reads.searchP99Ms <= 50 && large.reads.historyP99Ms <= 50],
    [
      `bid p99 at ${RATE}/s <= 2x the ${BASELINE} figure`,
      large.random.p99Ms <= 2 * small.random.p99Ms && large.hot.p99Ms <= 2 * small.hot.p99Ms,
    ],
  ] as const;
  const row = (label: string, small: unknown, large: unknown) => `| ${label} | ${String(small)} | ${String(large)} |`;
  const table = [
    `| measure | ${BASELINE.toLocaleString()} auctions | ${line.auctions.toLocaleString()} auctions |`,
    '|---|---|---|',
    row(
      `bids at ${RATE}/s, random auctions: p50 / p99 / max ms`,
      `${small.random.p50Ms} / ${small.random.p99Ms} / ${small.random.maxMs}`,
      `${large.random.p50Ms} / ${large.random.p99Ms} / ${large.random.maxMs}`,
    ),
    row(
      `bids at ${RATE}/s, ${hot.length} hot auctions: p50 / p99 / max ms`,
      `${small.hot.p50Ms} / ${small.hot.p99Ms} / ${small.hot.maxMs}`,
      `${large.hot.p50Ms} / ${large.hot.p99Ms} / ${large.hot.maxMs}`,
    ),
    ...(['random', 'hot'] as const).map((kind) => {
      const shares = (cpu: Record<string, number | null>) =>
        Object.entries(cpu)
          .map(([name, pct]) => `${name} ${pct ?? '-'}`)
          .join(', ');
      return row(
        `CPU % of a core during the ${kind} bids`,
        shares(small[kind].cpuPercent),
        shares(large[kind].cpuPercent),
      );
    }),
    row(
      'search p50 / p99 ms',
      `${small.reads.searchP50Ms} / ${small.reads.searchP99Ms}`,
      `${large.reads.searchP50Ms} / ${large.reads.searchP99Ms}`,
    ),
    row('the three slowest searches', small.reads.slowestSearches.join(', '), large.reads.slowestSearches.join(', ')),
    row(
      'bid history p50 / p99 ms',
      `${small.reads.historyP50Ms} / ${small.reads.historyP99Ms}`,
      `${large.reads.historyP50Ms} / ${large.reads.historyP99Ms}`,
    ),
    ...Object.keys(rssLarge).map((name) => row(`RSS of ${name}, MiB`, mib(rssSmall[name]), mib(rssLarge[name]))),
    ...(['a', 'b', 'ra', 'rb'] as const).map((name) => {
      const m = (x: (typeof memorySmall)[EngineName]) =>
        x ? `${mib(x.heapUsed)} / ${mib(x.heapTotal)} / ${mib(x.external)}` : '';
      return row(
        `engine ${name}: V8 heap used / heap total / external MiB`,
        m(memorySmall[name]),
        m(memoryLarge[name]),
      );
    }),
    row(
      'engine bytes per auction (RSS growth), a / b / ra / rb',
      '',
      `${bytesPerAuction.a} / ${bytesPerAuction.b} / ${bytesPerAuction.ra} / ${bytesPerAuction.rb}`,
    ),
    row('listing through the command path', '', `${listedPerSec}/s (${(fillMs / 1_000).toFixed(0)} s)`),
    row('audit and replicas at the log end after', '', `${(catchUpMs / 1_000).toFixed(0)} s (${auditPerSec} events/s)`),
    row(
      'snapshot: stall max ms / write ms max / MiB per shard',
      '',
      `${snapshotStallMs} / ${Math.max(...snapshots.map((s) => s.ms))} / ${mib(Math.max(...snapshots.map((s) => s.bytes)))}`,
    ),
    row(
      `bids at ${RATE}/s while every shard snapshots: p99 / max ms`,
      '',
      `${duringSnapshots.p99Ms} / ${duringSnapshots.maxMs}`,
    ),
    row('primary SIGKILLed: clients without a primary, ms', '', failoverMs),
    row('killed primary back as a following standby, ms', '', standbyRestartMs),
    row('cold restart (both copies dead): serving again, ms', '', restartMs),
    row(
      'audit rows: auctions / bids; files MiB',
      '',
      `${rows.auctions.toLocaleString()} / ${rows.bids.toLocaleString()}; ${mib(auditBytes)}`,
    ),
    row('JetStream store MiB', '', mib(streamBytes)),
    row(
      'auctionctl status / audit verify: ms (exit code)',
      '',
      `${status.ms} (${status.code}) / ${verify.ms} (${verify.code})`,
    ),
  ].join('\n');
  const verdicts = targets.map(([what, met]) => `- ${what}: ${met ? 'met' : '**missed**'}`).join('\n');
  process.stderr.write(`\n${table}\n\n${verdicts}\n\nwhole run ${elapsed()}\n`);
  saveResult(values.out, 'scale', {
    small,
    large,
    rssSmall,
    rssLarge,
    memorySmall,
    memoryLarge,
    bytesPerAuction,
    listedPerSec,
    catchUpMs,
    snapshots,
    duringSnapshots,
    standbyRestartMs,
    auditRows: rows,
    auditBytes,
    streamBytes,
    statusMs: status.ms,
    verifyMs: verify.ms,
    verifyExit: verify.code,
    wholeRunMs: Date.now() - began,
    line,
  });
  if (!values['no-docs'])
    replaceDocSection(
      'make-bench-scale',
      '## Ten million auctions: `make bench-scale`',
      'Reproduce: `make bench-scale` (about 30 minutes; not part of `make test` or `make bench`).',
      `Latest run (${new Date().toISOString()}, ${values.out}):\n\n${table}\n\n${verdicts}\n\n\`${JSON.stringify(line)}\``,
    );
  process.stdout.write(`${JSON.stringify(line)}\n`);
  say(`the processes' output is in ${saveLogs('bench-scale-')}`);
} catch (error) {
  say(`the run failed; the processes' output is in ${saveLogs('bench-scale-failed-')}`);
  say(String((error as Error)?.stack ?? error));
  process.exitCode = 1;
} finally {
  await cluster.close();
}
// Whatever a failed phase left running (a bid load retrying every request) must not keep the run alive: after
// run 11 failed, its bench process spun at 90% of a core for the next 50 minutes, under runs 12 and 13.
process.exit();
