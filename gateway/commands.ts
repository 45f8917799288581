import {
  isRetrySafe,
  shardOfAuction,
  WIRE_LIMITS,
  type BidOutcome,
  type CommandResult,
  type CreateOutcome,
} from '../protocol/index.js';
import type { BidResult, CreatedAuction } from '../protocol/public.js';
import { ApiError } from './errors.js';
import type { Guards } from './guards.js';
import type { LiveFeed } from './live/feed.js';
import type { Metrics } from './metrics.js';
import {
  bidResultOf,
  createdAuction,
  overloadedBidResult,
  unrecordedBidResult,
  type CreateRequest,
} from './public-shapes.js';

/** When an engine that shed a bid did not say when to retry (an older engine). */
const DEFAULT_RETRY_AFTER_MS = 100;
import type { EngineStates } from './read-model/engine-states.js';
import type { CommandRouter } from './router.js';
import type { LoopSaturation } from './saturation.js';
import * as v from './validate.js';

export type CommandsDeps = {
  router: CommandRouter;
  live: LiveFeed;
  engineStates: EngineStates;
  guards: Guards;
  metrics: Metrics;
  /** This gateway's own saturation: bids shed before anything else is spent on them. */
  saturation: LoopSaturation;
};

/** The commands HTTP and the WebSocket both take (bids, creations), checked, then routed to the engines. */
export class Commands {
  /** Metric children by label, made once: prom-client hashes the labels of every call otherwise (per bid). */
  private readonly bidOutcomes = new Map<string, { inc(): void }>();
  private readonly bidSeconds: { observe(seconds: number): void };

  constructor(private readonly d: CommandsDeps) {
    this.bidSeconds = d.metrics.commandSeconds.labels({ type: 'bid' });
  }

  private countBid(outcome: string): void {
    let counter = this.bidOutcomes.get(outcome);
    if (!counter) this.bidOutcomes.set(outcome, (counter = this.d.metrics.bids.labels({ outcome })));
    counter.inc();
  }

  /** A bid for the acting user; rejections (including rate limits and unavailability) are BidResults. */
  async bid(userId: number, fields: v.Fields): Promise<BidResult> {
    const auctionId = v.id(fields, 'auctionId');
    const bidId = v.id(fields, 'bidId');
    const maxBid = v.amount(fields, 'maxBid');
    if (this.d.saturation.shouldShed()) {
      this.d.metrics.shedSaturated.inc();
      return this.overloaded(auctionId, bidId, this.d.saturation.retryAfterMs());
    }
    if (!this.d.guards.userAllowed(userId)) return this.unrecorded(auctionId, bidId, 'rate_limited');
    if (!(await this.d.live.hasShard(shardOfAuction(auctionId))))
      return this.unrecorded(auctionId, bidId, 'auction_not_found');
    const started = process.hrtime.bigint();
    const result = await this.d.router.bid(auctionId, {
      type: 'bid',
      auctionId,
      bidderId: userId,
      bidId,
      maxBid,
    });
    this.bidSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return this.bidResult(result, auctionId, bidId);
  }

  /** Creates an auction for `sellerId` on a random shard; its answer is made from the engine's state just after. */
  async createAuction(sellerId: number, fields: v.Fields): Promise<CreatedAuction> {
    const title = v.string(fields, 'title', { min: 1, max: WIRE_LIMITS.titleCharsMax });
    const description = v.optionalString(fields, 'description', WIRE_LIMITS.descriptionCharsMax) ?? '';
    const imageUrl = v.optionalString(fields, 'imageUrl', WIRE_LIMITS.imageUrlCharsMax) ?? '';
    if (imageUrl && !/^https?:\/\/\S+$/i.test(imageUrl))
      throw new ApiError('invalid_request', 'imageUrl must be an http(s) URL');
    const command: CreateRequest = {
      type: 'create',
      sellerId,
      title,
      description,
      imageUrl,
      startingPrice: v.amount(fields, 'startingPrice'),
      reservePrice: v.optionalNumber(fields, 'reservePrice') ?? 0,
      startsAt: v.optionalNumber(fields, 'startsAt') ?? 0,
      endsAt: v.amount(fields, 'endsAt'),
      softCloseSeconds: v.optionalNumber(fields, 'softCloseSeconds') ?? 0,
    };
    const shards = this.d.live.knownShards();
    if (shards.length === 0) throw new ApiError('unavailable', 'no shard is running');
    const shard = shards[Math.floor(Math.random() * shards.length)];
    const started = process.hrtime.bigint();
    const result = await this.d.router.send(shard, command);
    this.d.metrics.commandSeconds.observe({ type: 'create' }, Number(process.hrtime.bigint() - started) / 1e9);
    if (result.status === 'error')
      throw new ApiError(isRetrySafe(result.code) ? 'unavailable' : 'invalid_request', result.message);
    const o = result as CreateOutcome;
    if (o.status === 'rejected') {
      if (o.reason === 'shard_full' || isRetrySafe(o.reason))
        throw new ApiError('unavailable', `auction not created: ${o.reason}`);
      throw new ApiError('invalid_request', `auction not created: ${o.reason}`);
    }
    this.d.live.forgetMissing(o.auctionId);
    // The engine's state, or nothing when it does not hold the auction or does not answer.
    const state = await this.d.engineStates.one(o.auctionId).catch(() => null);
    return createdAuction(command, o, state);
  }

  /** A rejection decided without the engine, counted. */
  private unrecorded(
    auctionId: number,
    bidId: number,
    reason: 'rate_limited' | 'auction_not_found' | 'unavailable',
  ): BidResult {
    this.countBid(reason);
    return unrecordedBidResult(auctionId, bidId, reason);
  }

  private overloaded(auctionId: number, bidId: number, retryAfterMs: number): BidResult {
    this.countBid('overloaded');
    return overloadedBidResult(auctionId, bidId, retryAfterMs);
  }

  private bidResult(result: CommandResult, auctionId: number, bidId: number): BidResult {
    if (result.status === 'error') {
      if (result.code === 'unavailable') return this.unrecorded(auctionId, bidId, 'unavailable');
      // Shed by this gateway's budget or by the engine's queue bound: never decided, safe to send again.
      if (result.code === 'overloaded')
        return this.overloaded(auctionId, bidId, result.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS);
      this.countBid(result.code);
      throw new ApiError('invalid_request', result.message);
    }
    const o = result as BidOutcome;
    this.countBid(o.status === 'accepted' ? 'accepted' : (o.reason ?? 'rejected'));
    return bidResultOf(o);
  }
}
