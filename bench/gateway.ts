import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { pack, unpack } from 'msgpackr';
import type WebSocket from 'ws';
import { openSocket as open } from './harness/ws.js';
import { BidSocket, BidSocketGroup, readAnswer } from './harness/bid-socket.js';
import { Tokens } from '../gateway/auth.js';
import { EngineProcess, GatewayProcess, startNats } from '../testkit/index.js';
import { saveResult } from './results.js';
import { LOAD_GATEWAY_FLAGS } from './harness/gateway-flags.js';

/**
 * `make bench-gateway`: the whole bid path through the gateway. Worker
 * threads hold many WebSocket connections (msgpack frames, one user each)
 * and place bids open-loop at a constant rate, latency measured from each
 * bid's intended send time (no coordinated omission). Rates step up until
 * the answered rate falls behind the offered one. Then the fan-out phase:
 * 1,000 other connections watch one auction while it is bid on; the update
 * latency is from a bid's acknowledgement (at the bidder) to the state of
 * that version reaching each watcher.
 * Last line: {"bidsPerSec","p50Ms","p99Ms","updateP99Ms"}.
 */
type LoadJob = {
  kind: 'load';
  url: string;
  tokens: string[];
  auctions: number[];
  ratePerSec: number;
  seconds: number;
  firstBidId: number;
};
type LoadResult = {
  latenciesMs: number[];
  sent: number;
  answered: number;
  accepted: number;
  unavailable: number;
  limited: number;
  elapsedMs: number;
};
type FanoutJob = { kind: 'fanout'; url: string; connections: number; auctionId: number };
type FanoutResult = { arrivals: [version: number, atMs: number][][] };

const now = () => performance.timeOrigin + performance.now();

if (!isMainThread) {
  const job = workerData as LoadJob | FanoutJob;
  void (job.kind === 'load' ? runLoad(job) : runFanout(job)).then((result) => parentPort!.postMessage(result));
}

async function runLoad(job: LoadJob): Promise<LoadResult> {
  // Bids go over BidSocket, not `ws`: the generator's cost per bid must stay well below the gateway's.
  const sockets = await Promise.all(
    job.tokens.map((token) => BidSocket.open(`${job.url}?token=${token}&format=msgpack`)),
  );
  const intended = new Float64Array(Math.ceil(job.ratePerSec * job.seconds) + 1);
  const latenciesMs: number[] = [];
  let sent = 0;
  let answered = 0;
  let accepted = 0;
  let unavailable = 0;
  let limited = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const total = intended.length - 1;
  for (const socket of sockets) {
    socket.onAnswer = (data: Buffer) => {
      const m = readAnswer(data);
      if (m.type !== 'bid.result' || typeof m.rid !== 'number') return;
      latenciesMs.push(now() - intended[m.rid]);
      answered++;
      if (m.status === 'accepted') accepted++;
      else if (m.reason === 'unavailable') unavailable++;
      else if (m.reason === 'rate_limited') limited++;
      if (answered === total) done();
    };
  }
  const start = now() + 20;
  const perMs = job.ratePerSec / 1000;
  const maxBids = new Map<number, number>();
  // Each tick queues what is due per connection, then each connection that got bids writes them at once.
  const group = new BidSocketGroup(sockets);
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((now() - start) * perMs));
      while (sent < due) {
        const i = sent++;
        intended[i] = start + i / perMs;
        const c = i % sockets.length;
        const auctionId = job.auctions[(i * 7919) % job.auctions.length];
        // Each (connection, auction) raises its own maximum, so most bids are accepted and move the price.
        const key = c * 1_000_003 + auctionId;
        const maxBid = (maxBids.get(key) ?? 1_000 + c * 7) + 500;
        maxBids.set(key, maxBid);
        group.queueBid(c, auctionId, maxBid, job.firstBidId + i, i);
      }
      group.flush();
      // Sleep to the next millisecond rather than spin: the generator shares 2 cores with what it measures.
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    setImmediate(tick);
  });
  await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  const elapsedMs = now() - start;
  for (const socket of sockets) socket.terminate();
  return { latenciesMs, sent, answered, accepted, unavailable, limited, elapsedMs };
}

async function runFanout(job: FanoutJob): Promise<FanoutResult> {
  const arrivals: [number, number][][] = [];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < job.connections; i++) {
    const ws = await open(`${job.url}?format=msgpack`);
    const mine: [number, number][] = [];
    arrivals.push(mine);
    ws.on('message', (data: Buffer) => {
      const m = unpack(data) as { type: string; version?: number };
      if (m.type === 'auction.state') mine.push([m.version!, now()]);
    });
    ws.send(pack({ type: 'subscribe', auctionIds: [job.auctionId] }));
    sockets.push(ws);
  }
  parentPort!.postMessage({ ready: true });
  await new Promise((resolve) => parentPort!.once('message', resolve));
  for (const ws of sockets) ws.terminate();
  return { arrivals };
}

// --- main thread ------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      rates: { type: 'string', default: '5000,10000,20000,30000,40000,50000,60000' },
      connections: { type: 'string', default: '200' },
      workers: { type: 'string', default: '2' },
      auctions: { type: 'string', default: '2000' },
      watchers: { type: 'string', default: '1000' },
      out: { type: 'string', default: 'bench/results/gateway.json' },
    },
  });
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const secret = 'bench-secret-0123456789abcdef';
  const tokens = new Tokens(secret, 3_600_000);
  const nats = await startNats();
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0-3' });
  const gateway = await GatewayProcess.start({
    natsUrl: nats.url,
    secret,
    args: [...LOAD_GATEWAY_FLAGS],
  });
  const workers = Number(values.workers);
  const connections = Number(values.connections);
  try {
    const seller = tokens.mint(1).token;
    const auctions: number[] = [];
    for (let i = 0; i < Number(values.auctions); i++) {
      const r = await fetch(`${gateway.url}/v1/auctions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${seller}` },
        body: JSON.stringify({ title: `Bench lot ${i}`, startingPrice: 100, endsAt: Date.now() + 3_600_000 }),
      });
      auctions.push(((await r.json()) as { id: number }).id);
    }
    say(
      `gateway bench: ${auctions.length} auctions on 4 shards, ${connections} connections over ${workers} worker threads`,
    );

    const steps: {
      offered: number;
      answeredPerSec: number;
      acceptedPerSec: number;
      p50Ms: number;
      p99Ms: number;
      p999Ms: number;
      maxMs: number;
      unavailable: number;
      limited: number;
    }[] = [];
    let nextBidId = 1;
    for (const rate of values.rates.split(',').map(Number)) {
      const seconds = Number(values.seconds);
      const perWorker = Math.floor(connections / workers);
      const jobs: LoadJob[] = Array.from({ length: workers }, (_, w) => ({
        kind: 'load',
        url: gateway.wsUrl,
        auctions,
        seconds,
        ratePerSec: rate / workers,
        firstBidId: nextBidId + w * 10_000_000,
        tokens: Array.from({ length: perWorker }, (_, i) => tokens.mint(1_000 + w * perWorker + i).token),
      }));
      nextBidId += workers * 10_000_000;
      const results = await Promise.all(jobs.map((job) => runWorker<LoadResult>(job)));
      const h = hdr.build({
        lowestDiscernibleValue: 1,
        highestTrackableValue: 120_000_000,
        numberOfSignificantValueDigits: 3,
      });
      for (const r of results) for (const ms of r.latenciesMs) h.recordValue(Math.max(1, Math.round(ms * 1_000)));
      const answered = results.reduce((a, r) => a + r.answered, 0);
      const elapsed = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
      const step = {
        offered: rate,
        answeredPerSec: Math.round(answered / Math.max(elapsed, seconds)),
        acceptedPerSec: Math.round(results.reduce((a, r) => a + r.accepted, 0) / Math.max(elapsed, seconds)),
        p50Ms: h.getValueAtPercentile(50) / 1_000,
        p99Ms: h.getValueAtPercentile(99) / 1_000,
        p999Ms: h.getValueAtPercentile(99.9) / 1_000,
        maxMs: h.maxValue / 1_000,
        unavailable: results.reduce((a, r) => a + r.unavailable, 0),
        limited: results.reduce((a, r) => a + r.limited, 0),
      };
      steps.push(step);
      say(
        `  offered ${rate}/s: answered ${step.answeredPerSec}/s (accepted ${step.acceptedPerSec}/s), p50 ${step.p50Ms} ms, p99 ${step.p99Ms} ms, max ${step.maxMs} ms, unavailable ${step.unavailable}`,
      );
      // Past saturation the queue only grows: stop stepping.
      if (step.answeredPerSec < rate * 0.9 || step.p99Ms > 1_000) break;
    }
    const sustained = steps.filter((s) => s.answeredPerSec >= s.offered * 0.9);
    const peak = (sustained.length ? sustained : steps).reduce((a, b) => (b.answeredPerSec > a.answeredPerSec ? b : a));

    // Fan-out: watchers in worker threads, one bidder here.
    const watchers = Number(values.watchers);
    const auctionId = auctions[0];
    const fanSeconds = 5;
    const fanJobs: FanoutJob[] = Array.from({ length: workers }, (_, w) => ({
      kind: 'fanout',
      url: gateway.wsUrl,
      connections: Math.floor(watchers / workers) + (w < watchers % workers ? 1 : 0),
      auctionId,
    }));
    const fanWorkers = fanJobs.map((job) => startWorker<FanoutResult>(job));
    await Promise.all(fanWorkers.map((w) => w.ready));
    const bidder = await open(`${gateway.wsUrl}?token=${tokens.mint(999_999).token}&format=msgpack`);
    const acks = new Map<number, number>();
    bidder.on('message', (data: Buffer) => {
      const m = unpack(data) as { type: string; status?: string; version?: number };
      if (m.type === 'bid.result' && m.status === 'accepted') acks.set(m.version!, now());
    });
    let maxBid = 1_000_000;
    const bidEveryMs = 20;
    for (let i = 0; i < (fanSeconds * 1000) / bidEveryMs; i++) {
      maxBid += 10_000;
      bidder.send(pack({ type: 'bid', auctionId, maxBid, bidId: 900_000_000 + i, rid: i }));
      await new Promise((resolve) => setTimeout(resolve, bidEveryMs));
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    bidder.terminate();
    for (const w of fanWorkers) w.worker.postMessage('stop');
    const fanResults = await Promise.all(fanWorkers.map((w) => w.result));
    const u = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 120_000_000,
      numberOfSignificantValueDigits: 3,
    });
    let missing = 0;
    for (const result of fanResults) {
      for (const arrivals of result.arrivals) {
        for (const [version, ackedAt] of acks) {
          const first = arrivals.find(([v]) => v >= version);
          if (!first) {
            missing++;
            continue;
          }
          u.recordValue(Math.max(1, Math.round((first[1] - ackedAt) * 1_000)));
        }
      }
    }
    const update = {
      watchers,
      bidsAcked: acks.size,
      samples: u.totalCount,
      missing,
      p50Ms: u.getValueAtPercentile(50) / 1_000,
      p99Ms: u.getValueAtPercentile(99) / 1_000,
      maxMs: u.maxValue / 1_000,
    };
    say(
      `  fan-out to ${watchers} watchers: ${acks.size} bids, update after ack p50 ${update.p50Ms} ms, p99 ${update.p99Ms} ms, max ${update.maxMs} ms, missing ${missing}`,
    );

    const line = { bidsPerSec: peak.answeredPerSec, p50Ms: peak.p50Ms, p99Ms: peak.p99Ms, updateP99Ms: update.p99Ms };
    saveResult(values.out, 'gateway', { connections, workers, auctions: auctions.length, steps, peak, update, line });
    process.stdout.write(`${JSON.stringify(line)}\n`);
  } finally {
    await gateway.close();
    await engine.close();
    await nats.close();
  }
}

function runWorker<T>(job: LoadJob | FanoutJob): Promise<T> {
  return startWorker<T>(job).result;
}

function startWorker<T>(job: LoadJob | FanoutJob): { worker: Worker; ready: Promise<void>; result: Promise<T> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: job });
  let ready: () => void = () => {};
  const readyP = new Promise<void>((resolve) => (ready = resolve));
  const result = new Promise<T>((resolve, reject) => {
    worker.on('message', (m: unknown) => {
      if ((m as { ready?: boolean }).ready) ready();
      else resolve(m as T);
    });
    worker.once('error', reject);
  });
  if (job.kind === 'load') ready();
  return { worker, ready: readyP, result };
}

if (isMainThread) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench-gateway failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
