import type { NatsConnection } from '@nats-io/transport-node';
import { AuctionCore } from '../engine/core/index.js';
import { ShardLog } from '../shard/nats-log.js';
import { replayBatch } from '../shard/replay.js';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  EngineClient,
  isRetrySafe,
  type BidOutcome,
  type CommandResult,
  type CreateOutcome,
} from '../protocol/index.js';
import { Waiters } from './waiters.js';

export type AckedBid = { auctionId: number; bidderId: number; bidId: number; maxBid: number; seq: number };

/** Creates `n` auctions on `shard`, open for an hour, to bid on; their ids. */
export async function openAuctions(client: EngineClient, shard: number, n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const created = (await client.sendOne(shard, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
    })) as CreateOutcome;
    ids.push(created.auctionId);
  }
  return ids;
}

/**
 * A steady bid load from several clients that behave as the API asks: a bid
 * answered `unavailable` is retried with the same bidId until it gets an
 * answer. It records every answer, the windows during which no bid got one,
 * and any bid id answered "accepted" with two different sequence numbers.
 */
export class BidLoad {
  readonly acked: AckedBid[] = [];
  /** (bidder/bidId) -> every seq an "accepted" answer named. */
  readonly acceptedSeqs = new Map<string, Set<number>>();
  /** Lengths of the periods in which every request was answered `unavailable`. */
  readonly outagesMs: number[] = [];
  answered = 0;
  private outageSince: number | null = null;
  private readonly waiters = new Waiters();
  private running = false;
  private workers: Promise<void>[] = [];
  private nextBidId = 0;
  private readonly client: EngineClient;

  constructor(
    nc: NatsConnection,
    private readonly shard: number,
    private readonly auctions: number[],
    timeoutMs = 1_000,
  ) {
    this.client = new EngineClient(nc, timeoutMs);
  }

  start(clients = 4): void {
    this.running = true;
    this.workers = Array.from({ length: clients }, (_, w) => this.worker(w));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
    if (this.outageSince !== null) this.outagesMs.push(Date.now() - this.outageSince);
    this.outageSince = null;
  }

  /**
   * Resolves once `n` more bids than now have been answered (accepted or
   * rejected); rejects after `timeoutMs` so a shard that never serves again
   * fails the test with a reason instead of hanging it.
   */
  untilAnswered(n: number, timeoutMs = 90_000): Promise<void> {
    const from = this.answered;
    return this.waiters
      .until(
        () => (this.answered - from >= n ? true : undefined),
        timeoutMs,
        () =>
          `only ${this.answered - from} of ${n} bids answered in ${timeoutMs} ms (unavailable since ${this.outageSince === null ? 'never' : `${Date.now() - this.outageSince} ms`})`,
      )
      .then(() => undefined);
  }

  private countAnswer(): void {
    this.answered++;
    this.waiters.wake();
  }

  /** Bid ids with two different accepted sequence numbers (must be none). */
  acceptedTwice(): string[] {
    return [...this.acceptedSeqs].filter(([, seqs]) => seqs.size > 1).map(([key]) => key);
  }

  private async worker(w: number): Promise<void> {
    let round = 0;
    while (this.running) {
      round++;
      const bid = {
        type: 'bid',
        auctionId: this.auctions[(w + round) % this.auctions.length],
        bidderId: 2 + ((w * 31 + round) % 50),
        bidId: ++this.nextBidId,
        maxBid: 200 + round * 10 + w,
      };
      let result: CommandResult;
      for (;;) {
        const sentAt = Date.now();
        result = await this.client.sendOne(this.shard, bid);
        if (!(result.status === 'error' && isRetrySafe(result.code))) break;
        // The outage began when the first request that found no primary was sent.
        if (this.outageSince === null || sentAt < this.outageSince) this.outageSince = sentAt;
        if (!this.running) return;
      }
      if (this.outageSince !== null) {
        this.outagesMs.push(Date.now() - this.outageSince);
        this.outageSince = null;
      }
      this.countAnswer();
      if (result.status === 'accepted') {
        const seq = (result as BidOutcome).seq;
        const key = `${bid.bidderId}/${bid.bidId}`;
        if (!this.acceptedSeqs.has(key)) this.acceptedSeqs.set(key, new Set());
        this.acceptedSeqs.get(key)!.add(seq);
        this.acked.push({
          auctionId: bid.auctionId,
          bidderId: bid.bidderId,
          bidId: bid.bidId,
          maxBid: bid.maxBid,
          seq,
        });
      }
    }
  }
}

/** The whole stream of a shard replayed into a fresh core, plus what it says about bids. */
export async function replayShard(
  nc: NatsConnection,
  shard: number,
  auctionsMax = 1 << 20,
  idempotencyEntriesMax = 1 << 20,
) {
  const log = new ShardLog(nc, jetstream(nc), await jetstreamManager(nc), shard);
  const core = new AuctionCore({ shard, auctionsMax, idempotencyEntriesMax });
  const acceptedBids = new Map<string, number[]>();
  const writers: string[] = [];
  for await (const { batch } of log.read(0, await log.lastStreamSeq())) {
    replayBatch(core, batch);
    if (writers[writers.length - 1] !== batch.writer) writers.push(batch.writer);
    for (const e of batch.events) {
      if (e.command.type === 'bid' && e.outcome.status === 'accepted' && !(e.outcome as BidOutcome).duplicate) {
        const key = `${e.command.bidderId}/${e.command.bidId}`;
        acceptedBids.set(key, [...(acceptedBids.get(key) ?? []), e.seq]);
      }
    }
  }
  return { core, acceptedBids, writers };
}
