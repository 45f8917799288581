import { parentPort, Worker, workerData } from 'node:worker_threads';
import type WebSocket from 'ws';
import { openSocket as open } from './ws.js';
import { BidSocket, BidSocketGroup, readAnswer } from './bid-socket.js';
import { Latency } from './latency.js';
import { OpenLoopSchedule, pace } from './schedule.js';
import { runFloorReceivers, type FloorJob } from './fanout-floor.js';

/**
 * The load generator's worker threads: each holds many WebSocket connections
 * to the gateway (msgpack frames, one signed-in user per connection).
 * `bids`: an open-loop constant rate over the connections, a warm-up whose
 * answers are not measured, then the measured phase; progress every 250 ms.
 * `watch`: connections subscribed to one auction, recording when each
 * version arrives, turned into latencies once the bidder's ack times are in.
 */
export type BidJob = {
  kind: 'bids';
  url: string;
  tokens: string[];
  auctions: number[];
  ratePerSec: number;
  warmupMs: number;
  durationMs: number;
  firstBidId: number;
  /** Every maximum starts above this (earlier scenarios have raised prices). */
  maxBidBase: number;
  /** Give up waiting for answers this long after the last send. */
  drainMs: number;
  /** Connect now, start sending at this time (epoch ms): a step that must follow another one without a gap. */
  startAt?: number;
  /** Per slot of the measured phase (by intended time), count the requests slower than this or not decided. */
  slowMs?: number;
};
export type WatchJob = { kind: 'watch'; url: string; connections: number; auctionId: number };
export type Job = BidJob | WatchJob | FloorJob;

export type Progress = { type: 'progress'; sent: number; answered: number };
/** Where a bid job's measured phase lies (epoch ms), sent as soon as its schedule is fixed. */
export type MeasuredWindow = { type: 'window'; from: number; to: number };
export type BidResult = {
  type: 'result';
  latency: string;
  sent: number;
  answered: number;
  measured: number;
  accepted: number;
  rejected: number;
  errors: Record<string, number>;
  /** One message per error code, to say what went wrong. */
  errorSamples: Record<string, string>;
  /** Answers received per 250 ms slot of the measured phase (throughput over time). */
  timeline: number[];
  /** Decided bids (accepted or rejected by a rule) answered during the measured phase, by arrival time. */
  answeredInWindow: number;
  measuredMs: number;
  /** Bids shed (`overloaded`, nothing recorded) among those meant for the measured phase, and their latency. */
  shed: number;
  shedLatency: string;
  /** With `slowMs`: per slot of intended send time, the requests meant for it and how many were slow or undecided. */
  slots: { sent: number; answered: number; slow: number }[];
};
export type WatchResult = { type: 'result'; latency: string; samples: number; missing: number; connected: number };

const SLOT_MS = 250;
/** Answers that are not decisions: shed before deciding, outcome unknown, or refused by a rate limit. */
const UNDECIDED = new Set(['overloaded', 'unavailable', 'rate_limited']);
/**
 * Consecutive bids go to the same connection this many at a time, so the bids
 * due in one pacing tick share a few writes (and their answers a few reads)
 * instead of costing a syscall each: at 15,000/s a tick holds ~15 bids, which
 * one connection after another would each send alone (issue 16, item 5:
 * "many bids per write"). Over a step every connection still sends the same
 * share of the load.
 */
export const BIDS_PER_CONNECTION_RUN = 8;

/**
 * Which connection sends bid `i` and on which auction: runs of
 * BIDS_PER_CONNECTION_RUN consecutive bids per connection, and each
 * connection's k-th bid on the auction its k-th bid had when bid i went to
 * connection i % connections (auction (i * 7919) % auctions): the same bidders
 * on the same auctions in the same order, so the mix of accepted, outbid and
 * too-low bids is what it was; only which bids share a write changed.
 */
export function bidSlot(
  i: number,
  connections: number,
  auctions: number,
): { connection: number; auctionIndex: number } {
  const run = Math.floor(i / BIDS_PER_CONNECTION_RUN);
  const connection = run % connections;
  const k = Math.floor(run / connections) * BIDS_PER_CONNECTION_RUN + (i % BIDS_PER_CONNECTION_RUN);
  return { connection, auctionIndex: ((connection + connections * k) * 7919) % auctions };
}
const now = () => performance.timeOrigin + performance.now();

async function runBids(job: BidJob): Promise<BidResult> {
  // Bids go over BidSocket, not `ws`: the generator's cost per bid must stay well below the system's.
  const sockets = await Promise.all(
    job.tokens.map((token) => BidSocket.open(`${job.url}?token=${token}&format=msgpack`)),
  );
  const total = Math.max(1, Math.round((job.ratePerSec * (job.warmupMs + job.durationMs)) / 1_000));
  const start = Math.max(now() + 20, job.startAt ?? 0);
  const schedule = new OpenLoopSchedule(job.ratePerSec, start, total);
  const measureFrom = start + job.warmupMs;
  parentPort!.postMessage({
    type: 'window',
    from: measureFrom,
    to: measureFrom + job.durationMs,
  } satisfies MeasuredWindow);
  const intended = new Float64Array(total);
  const latency = new Latency();
  const shedLatency = new Latency();
  let shed = 0;
  const slots = Array.from({ length: job.slowMs === undefined ? 0 : Math.ceil(job.durationMs / SLOT_MS) }, () => ({
    sent: 0,
    answered: 0,
    slow: 0,
  }));
  const timeline = new Array<number>(Math.ceil(job.durationMs / SLOT_MS)).fill(0);
  const errors: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  let answeredInWindow = 0;
  let answered = 0;
  let measured = 0;
  let accepted = 0;
  let rejected = 0;
  let sent = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let socketError = '';
  for (const socket of sockets) {
    socket.onError = (error) => (socketError ||= error.message);
    socket.onAnswer = (data: Buffer) => {
      const m = readAnswer(data);
      if (typeof m.rid !== 'number' || (m.type !== 'bid.result' && m.type !== 'error')) return;
      const at = now();
      answered++;
      const intendedAt = intended[m.rid];
      // Throughput counts decided bids (accepted, or rejected by a rule) as they arrive in the
      // window, never shed, `unavailable` or errors; latency, every request meant for the window.
      const decided = m.status === 'accepted' || (m.status === 'rejected' && !UNDECIDED.has(m.reason ?? ''));
      const slot = Math.floor((at - measureFrom) / SLOT_MS);
      if (decided && slot >= 0 && slot < timeline.length) {
        timeline[slot]++;
        answeredInWindow++;
      }
      if (intendedAt >= measureFrom && intendedAt < measureFrom + job.durationMs) {
        measured++;
        latency.record(intendedAt, at);
        const slot = slots[Math.floor((intendedAt - measureFrom) / SLOT_MS)];
        if (slot) {
          slot.answered++;
          if (!decided || at - intendedAt > job.slowMs!) slot.slow++;
        }
        if (m.status === 'accepted') accepted++;
        else if (decided) rejected++;
        else {
          if (m.reason === 'overloaded') {
            shed++;
            shedLatency.record(intendedAt, at);
          }
          const code = m.reason ?? m.code ?? 'error';
          errors[code] = (errors[code] ?? 0) + 1;
          errorSamples[code] ??= String(m.message ?? '');
        }
      }
      if (answered === total) done();
    };
  }
  const progress = setInterval(
    () => parentPort!.postMessage({ type: 'progress', sent, answered } satisfies Progress),
    SLOT_MS,
  );
  // Each (connection, auction) raises its own maximum, so most bids move the price and are accepted.
  const maxima = new Map<number, number>();
  // Bids are queued per connection as they fall due and written after each group of them.
  const group = new BidSocketGroup(sockets);
  await pace(
    schedule,
    (i, intendedAt) => {
      intended[i] = intendedAt;
      const slot = slots[Math.floor((intendedAt - measureFrom) / SLOT_MS)];
      if (slot) slot.sent++;
      const { connection: c, auctionIndex } = bidSlot(i, sockets.length, job.auctions.length);
      const auctionId = job.auctions[auctionIndex];
      const key = c * 1_000_003 + auctionId;
      const maxBid = (maxima.get(key) ?? job.maxBidBase + c * 7) + 500;
      maxima.set(key, maxBid);
      group.queueBid(c, auctionId, maxBid, job.firstBidId + i, i);
      sent = i + 1;
    },
    { afterBatch: () => group.flush() },
  );
  await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, job.drainMs))]);
  clearInterval(progress);
  // Unanswered requests are counted as errors of the measured phase, never dropped silently.
  const missing = total - answered;
  if (missing > 0) {
    errors.unanswered = missing;
    if (socketError) errorSamples.unanswered ??= `a connection failed: ${socketError}`;
  }
  for (const socket of sockets) socket.terminate();
  return {
    type: 'result',
    latency: latency.encode(),
    sent,
    answered,
    measured,
    accepted,
    rejected,
    errors,
    errorSamples,
    timeline,
    answeredInWindow,
    measuredMs: job.durationMs,
    shed,
    shedLatency: shedLatency.encode(),
    slots,
  };
}

const STATE_PREFIX = Buffer.from('{"type":"auction.state"');
const VERSION_KEY = Buffer.from('"version":');

/** The version of an `auction.state` JSON frame, -1 for any other frame. */
export function stateVersion(frame: Buffer): number {
  if (
    frame.length < STATE_PREFIX.length ||
    frame.compare(STATE_PREFIX, 0, STATE_PREFIX.length, 0, STATE_PREFIX.length) !== 0
  )
    return -1;
  let at = frame.indexOf(VERSION_KEY);
  if (at < 0) return -1;
  at += VERSION_KEY.length;
  let version = 0;
  for (let c = frame[at]; c >= 48 && c <= 57; c = frame[++at]) version = version * 10 + (c - 48);
  return version;
}

async function runWatch(job: WatchJob): Promise<WatchResult> {
  const arrivals: Float64Array[] = [];
  const counts: number[] = [];
  const sockets: WebSocket[] = [];
  const capacity = 4_096;
  for (let i = 0; i < job.connections; i++) {
    // JSON frames, read without parsing them whole: the receivers share the 2 cores with the
    // gateway, and at 10,000 subscribers the cost per frame here decides the last arrival.
    const ws = await open(`${job.url}?format=json`, { skipUTF8Validation: true });
    const index = arrivals.length;
    // version -> first arrival time, in a flat array of [version, time] pairs.
    arrivals.push(new Float64Array(capacity * 2));
    counts.push(0);
    ws.on('message', (data: Buffer) => {
      const at = now();
      const version = stateVersion(data);
      if (version < 0 || counts[index] >= capacity) return;
      const n = counts[index]++;
      arrivals[index][n * 2] = version;
      arrivals[index][n * 2 + 1] = at;
    });
    ws.send(JSON.stringify({ type: 'subscribe', auctionIds: [job.auctionId] }));
    sockets.push(ws);
  }
  parentPort!.postMessage({ type: 'ready' });
  // The bidder's acknowledgements: version -> time. A watcher sees version v (or a later one, conflated) at its first state >= v.
  const acks = await new Promise<[number, number][]>((resolve) =>
    parentPort!.once('message', (m: { acks: [number, number][] }) => resolve(m.acks)),
  );
  for (const ws of sockets) ws.terminate();
  const latency = new Latency();
  let missing = 0;
  for (let s = 0; s < arrivals.length; s++) {
    const a = arrivals[s];
    for (const [version, ackedAt] of acks) {
      let seen = -1;
      for (let n = 0; n < counts[s]; n++) {
        if (a[n * 2] >= version) {
          seen = a[n * 2 + 1];
          break;
        }
      }
      if (seen < 0) missing++;
      else latency.record(ackedAt, Math.max(ackedAt, seen));
    }
  }
  return { type: 'result', latency: latency.encode(), samples: latency.count, missing, connected: sockets.length };
}

if (parentPort && workerData) {
  const job = workerData as Job;
  (job.kind === 'bids' ? runBids(job) : job.kind === 'watch' ? runWatch(job) : runFloorReceivers(job)).then(
    (result) => parentPort!.postMessage(result),
    (error: unknown) =>
      parentPort!.postMessage({ type: 'failed', message: error instanceof Error ? error.stack : String(error) }),
  );
}

/** Starts a job on a worker thread: progress, its measured window and readiness as they come, then its result. */
export function startJob<R>(
  job: Job,
  onProgress: (p: Progress) => void = () => undefined,
  onWindow: (w: MeasuredWindow) => void = () => undefined,
) {
  const worker = new Worker(new URL(import.meta.url), { workerData: job });
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const result = new Promise<R>((resolve, reject) => {
    worker.on('message', (m: { type: string; message?: string }) => {
      if (m.type === 'progress') onProgress(m as Progress);
      else if (m.type === 'window') onWindow(m as MeasuredWindow);
      else if (m.type === 'ready') markReady();
      else if (m.type === 'failed') reject(new Error(m.message));
      else resolve(m as R);
    });
    worker.once('error', reject);
  }).finally(() => void worker.terminate());
  if (job.kind === 'bids') markReady();
  return { worker, ready, result };
}
