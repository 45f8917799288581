import { parseArgs } from 'node:util';
import { saveResult } from './results.js';
import { AuctionCore, LIMITS } from '../engine/core/index.js';

/**
 * `make bench-core`: the engine core alone, on one thread. For each auction
 * count it creates that many open auctions, then decides random proxy bids
 * through `placeBid` (the engine's bid path) and reports bids per second and
 * resident memory growth per auction (the hot state, timers and the default
 * idempotency table, all preallocated by the core). The last line is JSON.
 */
const { values } = parseArgs({
  options: {
    auctions: { type: 'string', default: '1000000,10000000' },
    bids: { type: 'string', default: '20000000' },
    seed: { type: 'string', default: '42' },
    batch: { type: 'string', default: '128' },
    out: { type: 'string', default: 'bench/results/core.json' },
  },
});

const BATCH = Number(values.batch);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (make bench-core does)');

/** xorshift32: deterministic, allocation-free randomness for the load. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function rssAfterGc(): number {
  gc!();
  gc!();
  return process.memoryUsage().rss;
}

type Result = {
  auctions: number;
  bids: number;
  bidsPerSec: number;
  acceptedShare: number;
  createPerSec: number;
  bytesPerAuction: number;
};

function runOnce(auctions: number, bids: number, seed: number): Result {
  const random = rng(seed);
  // Load pregenerated outside the timed loop: auction index, bidder, amount.
  const chunk = Math.min(bids, 4_000_000);
  const pickAuction = new Uint32Array(chunk);
  const pickBidder = new Uint32Array(chunk);
  const pickAmount = new Uint32Array(chunk);
  for (let i = 0; i < chunk; i++) {
    pickAuction[i] = Math.floor(random() * auctions);
    pickBidder[i] = 2 + Math.floor(random() * 100_000);
    pickAmount[i] = 100 + Math.floor(random() * 1_000_000);
  }
  const rssBefore = rssAfterGc();

  const core = new AuctionCore({ shard: 0, auctionsMax: auctions });
  const start = 1_700_000_000_000;
  let seq = 0;
  const createStarted = performance.now();
  for (let i = 0; i < auctions; i++) {
    core.create(
      {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        reservePrice: 0,
        startsAt: 0,
        endsAt: start + 86_400_000,
        softCloseSeconds: 60,
      },
      ++seq,
      start,
    );
  }
  const createMs = performance.now() - createStarted;

  let accepted = 0;
  let bidId = 0;
  let touched = 0;
  const bidStarted = performance.now();
  for (let done = 0; done < bids;) {
    const n = Math.min(chunk, bids - done);
    const t = start + done; // time advances 1 ms per bid: a day is never reached
    // As the engine does: warm a batch (independent loads overlap), then decide it.
    for (let from = 0; from < n; from += BATCH) {
      const to = Math.min(n, from + BATCH);
      for (let i = from; i < to; i++)
        touched += core.warm((pickAuction[i] + 1) * 1024, pickBidder[i], bidId + 1 + i - from);
      for (let i = from; i < to; i++) {
        const auctionId = (pickAuction[i] + 1) * 1024; // shard 0: number * SHARDS_MAX
        const out = core.placeBid(auctionId, pickBidder[i], ++bidId, pickAmount[i] + (done >>> 4), ++seq, t + i);
        if (out.status === 'accepted') accepted++;
      }
    }
    done += n;
  }
  const bidMs = performance.now() - bidStarted;
  if (touched === -1) process.stdout.write('');
  const rssAfter = rssAfterGc();
  if (core.auctionsCreated !== auctions) throw new Error('creation failed');
  return {
    auctions,
    bids,
    bidsPerSec: Math.round(bids / (bidMs / 1000)),
    acceptedShare: Number((accepted / bids).toFixed(3)),
    createPerSec: Math.round(auctions / (createMs / 1000)),
    bytesPerAuction: Number(((rssAfter - rssBefore) / auctions).toFixed(1)),
  };
}

const counts = values.auctions.split(',').map(Number);
const results: Result[] = [];
for (const auctions of counts) {
  // Each size in a clean heap state: the previous core is garbage by now.
  const result = runOnce(auctions, Number(values.bids), Number(values.seed));
  results.push(result);
  process.stdout.write(
    `${auctions.toLocaleString('en')} auctions: ${result.bidsPerSec.toLocaleString('en')} bids/s ` +
      `(${(result.acceptedShare * 100).toFixed(1)}% accepted), ${result.createPerSec.toLocaleString('en')} creates/s, ` +
      `${result.bytesPerAuction} bytes/auction RSS growth\n`,
  );
}

const last = results[results.length - 1];
saveResult(values.out, 'core', { idempotencyEntries: LIMITS.idempotencyEntriesDefault, results });
process.stdout.write(
  JSON.stringify({ auctions: last.auctions, bidsPerSec: last.bidsPerSec, bytesPerAuction: last.bytesPerAuction }) +
    '\n',
);
