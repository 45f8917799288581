import { parseArgs } from 'node:util';
import { saveResult } from './results.js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import * as hdr from 'hdr-histogram-js';
import { encode, EngineClient, subjects } from '../protocol/index.js';
import { decodeResultBatch, encodeCommandBatch } from '../protocol/binary/command-format.js';
import { ReplyInbox } from '../protocol/reply-inbox.js';
import { EngineProcess, startNats } from '../testkit/index.js';

/**
 * `make bench-engine`: the engine process driven directly over NATS, no
 * gateway. Phases, each on a fresh nats-server + engine pair:
 *   1. naive ceiling: one JetStream publish per bid (what the design avoids);
 *   2. peak: many concurrent requesters, closed loop, bids batched per request
 *      as a gateway batches per event-loop tick, sent as a gateway sends them
 *      (binary commands batches through one reply inbox);
 *   3. latency at half the peak: open loop at a constant rate, latency from
 *      each request's intended send time (no coordinated omission).
 * Last line: {"bidsPerSec","p50Ms","p99Ms","eventsPerAppend","jetstreamPerBidCeiling"}.
 */
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    requesters: { type: 'string', default: '64' },
    'bids-per-request': { type: 'string', default: '32' },
    auctions: { type: 'string', default: '10000' },
    out: { type: 'string', default: 'bench/results/engine.json' },
  },
});
const SECONDS = Number(values.seconds);
const REQUESTERS = Number(values.requesters);
const PER_REQUEST = Number(values['bids-per-request']);
const AUCTIONS = Number(values.auctions);

const say = (line: string) => process.stderr.write(`${line}\n`);

async function withCluster<T>(
  fn: (nc: NatsConnection, engine: EngineProcess | null) => Promise<T>,
  withEngine: boolean,
): Promise<T> {
  const nats = await startNats();
  const engine = withEngine ? await EngineProcess.start({ natsUrl: nats.url, shards: '0' }) : null;
  const nc = await connect({ servers: nats.url });
  try {
    return await fn(nc, engine);
  } finally {
    await nc.close();
    await engine?.close();
    await nats.close();
  }
}

/** One stream message per bid, as many in flight as the requesters would keep. */
async function naiveCeiling(nc: NatsConnection): Promise<number> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'NAIVE', subjects: ['naive.>'] });
  const js = jetstream(nc);
  const payload = encode({ type: 'bid', auctionId: 1024, bidderId: 2, bidId: 1, maxBid: 500 });
  let published = 0;
  const deadline = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: REQUESTERS * 4 }, async () => {
      while (Date.now() < deadline) {
        await js.publish('naive.bids', payload);
        published++;
      }
    }),
  );
  return Math.round(published / SECONDS);
}

let nextBidId = 0;
function bidBatch(auctions: number[], size: number): Uint8Array {
  const commands = new Array(size);
  for (let i = 0; i < size; i++) {
    const bidId = ++nextBidId;
    commands[i] = {
      type: 'bid',
      auctionId: auctions[bidId % auctions.length],
      bidderId: 2 + (bidId % 5_000),
      bidId,
      maxBid: 100 + (bidId >>> 3),
    };
  }
  return encodeCommandBatch(commands);
}

async function createAuctions(client: EngineClient): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < AUCTIONS; i += 512) {
    const results = await client.send(
      0,
      Array.from({ length: Math.min(512, AUCTIONS - i) }, () => ({
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        endsAt: Date.now() + 86_400_000,
      })),
    );
    for (const r of results) if (r.status === 'accepted' && 'auctionId' in r) ids.push(r.auctionId);
  }
  if (ids.length !== AUCTIONS) throw new Error('auction creation failed');
  return ids;
}

type Status = { appendsAcked: number; eventsAcked: number };

const inboxes = new WeakMap<NatsConnection, ReplyInbox>();
/** One reply inbox per connection, as a gateway has. */
function inboxOf(nc: NatsConnection): ReplyInbox {
  let inbox = inboxes.get(nc);
  if (!inbox) inboxes.set(nc, (inbox = new ReplyInbox(nc)));
  return inbox;
}

async function peak(
  nc: NatsConnection,
  client: EngineClient,
  auctions: number[],
): Promise<{ bidsPerSec: number; eventsPerAppend: number }> {
  const before = await client.control<Status>(0, { op: 'status' });
  let accepted = 0;
  let answered = 0;
  const deadline = Date.now() + SECONDS * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: REQUESTERS }, async () => {
      while (Date.now() < deadline) {
        const reply = decodeResultBatch(
          (await inboxOf(nc).request(subjects.commands(0), bidBatch(auctions, PER_REQUEST), 10_000)).data,
        );
        answered += reply.results.length;
        for (const r of reply.results) if (r.status === 'accepted') accepted++;
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const after = await client.control<Status>(0, { op: 'status' });
  say(
    `  peak: ${Math.round(answered / seconds).toLocaleString('en')} bids/s answered (${((100 * accepted) / answered).toFixed(1)}% accepted)`,
  );
  return {
    bidsPerSec: Math.round(answered / seconds),
    eventsPerAppend: Number(
      ((after.eventsAcked - before.eventsAcked) / Math.max(1, after.appendsAcked - before.appendsAcked)).toFixed(1),
    ),
  };
}

/** Open loop at `rate` bids/s: requests leave on a fixed schedule whatever the answers do. */
async function latencyAt(
  nc: NatsConnection,
  auctions: number[],
  rate: number,
): Promise<{ p50Ms: number; p99Ms: number; achieved: number }> {
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const requestsPerSec = rate / PER_REQUEST;
  const started = performance.now();
  const endAt = started + SECONDS * 1000;
  let sent = 0;
  let done = 0;
  const inflight = new Set<Promise<void>>();
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      const due = Math.min(
        Math.floor(((Math.min(now, endAt) - started) / 1000) * requestsPerSec),
        Math.floor(SECONDS * requestsPerSec),
      );
      for (; sent < due; sent++) {
        const intended = started + (sent / requestsPerSec) * 1000;
        const p = inboxOf(nc)
          .request(subjects.commands(0), bidBatch(auctions, PER_REQUEST), 10_000)
          .then(
            () => {
              histogram.recordValue(Math.max(1, Math.round((performance.now() - intended) * 1000)));
              done++;
            },
            () => undefined,
          );
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      if (now >= endAt) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  await Promise.all(inflight);
  return {
    p50Ms: Number((histogram.getValueAtPercentile(50) / 1000).toFixed(2)),
    p99Ms: Number((histogram.getValueAtPercentile(99) / 1000).toFixed(2)),
    achieved: Math.round((done * PER_REQUEST) / SECONDS),
  };
}

say(
  `bench-engine: ${SECONDS}s phases, ${REQUESTERS} requesters x ${PER_REQUEST} bids per request, ${AUCTIONS} auctions`,
);
const ceiling = await withCluster((nc) => naiveCeiling(nc), false);
say(`  naive ceiling (one JetStream publish per bid): ${ceiling.toLocaleString('en')} msgs/s`);
const measured = await withCluster(async (nc) => {
  const client = new EngineClient(nc, 10_000);
  const auctions = await createAuctions(client);
  const top = await peak(nc, client, auctions);
  const half = await latencyAt(nc, auctions, top.bidsPerSec / 2);
  say(
    `  at half the peak (${Math.round(top.bidsPerSec / 2).toLocaleString('en')} bids/s offered, ${half.achieved.toLocaleString('en')} answered): p50 ${half.p50Ms} ms, p99 ${half.p99Ms} ms`,
  );
  return { ...top, ...half };
}, true);

const result = {
  bidsPerSec: measured.bidsPerSec,
  p50Ms: measured.p50Ms,
  p99Ms: measured.p99Ms,
  eventsPerAppend: measured.eventsPerAppend,
  jetstreamPerBidCeiling: ceiling,
};
saveResult(values.out, 'engine', {
  seconds: SECONDS,
  requesters: REQUESTERS,
  bidsPerRequest: PER_REQUEST,
  ...result,
  vsCeiling: Number((result.bidsPerSec / ceiling).toFixed(2)),
});
process.stdout.write(JSON.stringify(result) + '\n');
