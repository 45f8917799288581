import { shardOfAuction, type AuctionState, type EngineClient } from '../../protocol/index.js';
import type { ControlOperations, ErrorReply, ReplyOf, RequestOf } from '../../protocol/operations.js';
import { natsFailureOf } from '../../protocol/nats-errors.js';
import { ApiError } from '../errors.js';

type StatesReply = ReplyOf<ControlOperations, 'states'> | ErrorReply;

/**
 * Auction states from a shard's primary (`{op:"states"}` on its control
 * subject), answered only once every event a state reflects is durable:
 * a gateway never shows a version the log might lose.
 */
export class EngineStates {
  constructor(private readonly engines: EngineClient) {}

  /** One auction's state (null: the engine does not hold it); ApiError `unavailable` when the primary does not answer. */
  async one(auctionId: number): Promise<AuctionState | null> {
    const shard = shardOfAuction(auctionId);
    let reply: StatesReply;
    try {
      reply = await this.ask(shard, [auctionId]);
    } catch (error) {
      // Which of the two (no copy serving it, or a primary that did not answer in time) is what an operator acts on.
      throw new ApiError('unavailable', `shard ${shard} did not answer (${natsFailureOf(error)})`, { cause: error });
    }
    const { error } = reply as Partial<ErrorReply>;
    if (error) throw new ApiError('unavailable', error.message);
    return (reply as ReplyOf<ControlOperations, 'states'>).states?.[0] ?? null;
  }

  /** Some auctions of one shard, by position (null: not held); rejects when the primary does not answer or refuses. */
  async many(shard: number, auctionIds: number[]): Promise<(AuctionState | null)[] | undefined> {
    const reply = await this.ask(shard, auctionIds);
    const { error } = reply as Partial<ErrorReply>;
    if (error) throw new Error(error.message);
    return (reply as ReplyOf<ControlOperations, 'states'>).states;
  }

  private ask(shard: number, auctionIds: number[]): Promise<StatesReply> {
    const request: RequestOf<ControlOperations> = { op: 'states', auctionIds };
    return this.engines.control<StatesReply>(shard, request);
  }
}
