import { parseArgs } from 'node:util';
import { saveResult } from './results.js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { AuctionCore } from '../engine/core/index.js';
import { ShardLog } from '../shard/nats-log.js';
import {
  auditSubject,
  decode,
  encode,
  encodeLog,
  type Command,
  type LogBatch,
  type LogEvent,
} from '../protocol/index.js';
import type { AuditQueryOperations, ReplyOf, RequestFor } from '../protocol/operations.js';
import { AuditProcess, startNats } from '../testkit/index.js';

/**
 * `make bench-audit`: one shard's audit fed at full speed. Real events (a
 * core decides creations and random proxy bids) are appended to the shard's
 * stream in batches as an engine would. Phase 1: the stream is filled first,
 * then the audit starts and its catch-up rate is timed (events/s into SQLite).
 * Phase 2: events are appended live at a steady rate and the audit's lag
 * (commit time minus the batch's engine time) is read from its histogram.
 * Last line: {"eventsPerSec":N,"lagMsP99":N}.
 */
const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    'batch-events': { type: 'string', default: '500' },
    'live-rate': { type: 'string', default: '50000' },
    'live-seconds': { type: 'string', default: '5' },
    out: { type: 'string', default: 'bench/results/audit.json' },
    'chunk-bytes-max': { type: 'string', default: String(1 << 20) },
  },
});
const EVENTS = Number(values.events);
const BATCH = Number(values['batch-events']);
const say = (line: string) => process.stderr.write(`${line}\n`);

class Feeder {
  private readonly core = new AuctionCore({ shard: 0, auctionsMax: 1 << 20, idempotencyEntriesMax: 1 << 20 });
  private readonly auctions: number[] = [];
  private bidId = 0;
  private streamSeq = 0;
  constructor(private readonly log: ShardLog) {}

  private nextEvents(n: number, t: number): LogEvent[] {
    const events: LogEvent[] = [];
    for (let i = 0; i < n; i++) {
      const seq = this.core.lastSeq + 1;
      const command: Command =
        this.auctions.length < 1_000 || seq % 500 === 0
          ? {
              type: 'create',
              sellerId: 1,
              startingPrice: 100,
              reservePrice: 0,
              startsAt: 0,
              endsAt: t + 86_400_000,
              softCloseSeconds: 0,
            }
          : {
              type: 'bid',
              auctionId: this.auctions[seq % this.auctions.length],
              bidderId: 2 + (seq % 997),
              bidId: ++this.bidId,
              maxBid: 100 + (seq >>> 2),
            };
      const outcome = this.core.apply(command, seq, t);
      if (outcome.type === 'create' && outcome.status === 'accepted') this.auctions.push(outcome.auctionId);
      events.push(
        command.type === 'create'
          ? { seq, command, outcome, text: { title: `lot ${seq}`, description: 'bench item' } }
          : { seq, command, outcome },
      );
    }
    return events;
  }

  /** Appends `events` events in batches, pipelined like the engine (8 in flight). */
  async feed(events: number, ratePerSec = Infinity): Promise<void> {
    const started = Date.now();
    const inflight: Promise<unknown>[] = [];
    for (let sent = 0; sent < events; sent += BATCH) {
      if (Number.isFinite(ratePerSec)) {
        const due = started + (sent / ratePerSec) * 1000;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
      const t = Math.max(Date.now(), this.core.lastTimestampMs);
      const batch: LogBatch = {
        v: 1,
        shard: 0,
        writer: 'bench',
        t,
        events: this.nextEvents(Math.min(BATCH, events - sent), t),
      };
      inflight.push(this.log.append(encodeLog(batch), this.streamSeq++, 'bench', 10_000));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
  }
}

async function position(nc: NatsConnection, resetLag = false) {
  const request: RequestFor<AuditQueryOperations, 'position'> = { op: 'position', resetLag };
  return decode((await nc.request(auditSubject(0), encode(request), { timeout: 5_000 })).data) as ReplyOf<
    AuditQueryOperations,
    'position'
  >;
}

async function until(nc: NatsConnection, eventSeq: number): Promise<void> {
  // The audit has no push notification of progress; its position is polled.
  while ((await position(nc)).eventSeq < eventSeq) await new Promise((resolve) => setTimeout(resolve, 20));
}

const nats = await startNats();
const nc = await connect({ servers: nats.url });
let audit: AuditProcess | null = null;
try {
  const log = new ShardLog(nc, jetstream(nc), await jetstreamManager(nc), 0);
  await log.ensure({ shard: 0, auctionsMax: 1 << 20, idempotencyEntriesMax: 1 << 20 }, 1);
  const feeder = new Feeder(log);
  say(`bench-audit: filling the stream with ${EVENTS.toLocaleString('en')} events in batches of ${BATCH}`);
  await feeder.feed(EVENTS);
  audit = await AuditProcess.start({
    natsUrl: nats.url,
    shards: '0',
    args: ['--chunk-bytes-max', values['chunk-bytes-max']],
  });
  const started = Date.now();
  await until(nc, 1);
  say(`  first event applied after ${Date.now() - started} ms`);
  await until(nc, EVENTS);
  const eventsPerSec = Math.round(EVENTS / ((Date.now() - started) / 1000));
  say(`  catch-up: ${eventsPerSec.toLocaleString('en')} events/s into SQLite`);

  await position(nc, true);
  const liveRate = Number(values['live-rate']);
  const liveEvents = liveRate * Number(values['live-seconds']);
  await feeder.feed(liveEvents, liveRate);
  await until(nc, EVENTS + liveEvents);
  const live = await position(nc);
  say(
    `  live at ${liveRate.toLocaleString('en')} events/s: lag p50 ${live.lagMsP50} ms, p99 ${live.lagMsP99} ms over ${live.lagSamples} batches`,
  );
  const realigned = audit.log.split('\n').filter((l) => l.includes('realigning')).length;
  say(`  realignments: ${realigned}`);
  const verifyStarted = Date.now();
  const verify = await audit.verify();
  say(`  verify took ${Date.now() - verifyStarted} ms`);
  say(`  audit verify: ${verify.output.trim()}`);
  const result = { eventsPerSec, lagMsP99: live.lagMsP99 };
  saveResult(values.out, 'audit', {
    events: EVENTS,
    batchEvents: BATCH,
    liveRate,
    lagMsP50: live.lagMsP50,
    verify: verify.code === 0,
    ...result,
  });
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (error) {
  if (audit) say(`audit log:\n${audit.log.slice(-3_000)}`);
  throw error;
} finally {
  await audit?.close();
  await nc.close();
  await nats.close();
}
