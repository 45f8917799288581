/**
 * Identifiers shared by every process.
 *
 * An auction id encodes its shard so that any process can route a command
 * without a lookup: `auctionId = auctionNumber * SHARDS_MAX + shard`, where the
 * auction number counts the auctions created on that shard from 1. The shard
 * is therefore `auctionId % SHARDS_MAX` whatever the cluster's shard count.
 */

/** Upper bound on the shard count of any cluster; fixed forever, it is baked into ids. */
export const SHARDS_MAX = 1024;

/** Largest id the public API accepts (ids are positive integers below 2^53). */
export const ID_MAX = Number.MAX_SAFE_INTEGER;

/** Largest auction number a shard can issue: the id must stay below 2^53. */
export const AUCTION_NUMBER_MAX = Math.floor((ID_MAX - (SHARDS_MAX - 1)) / SHARDS_MAX);

/**
 * User ids live in 32 bits in the engine's hot state (leader and seller of each
 * auction), so the user registry must never issue a larger one.
 */
export const USER_ID_MAX = 0xffff_ffff;

/** A positive integer below 2^53, as the API requires of every id. */
export function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

export function isUserId(value: unknown): value is number {
  return isId(value) && value <= USER_ID_MAX;
}

export function isShard(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < SHARDS_MAX;
}

export function auctionIdOf(auctionNumber: number, shard: number): number {
  if (!Number.isSafeInteger(auctionNumber) || auctionNumber < 1 || auctionNumber > AUCTION_NUMBER_MAX) {
    throw new RangeError(`auction number out of range: ${auctionNumber}`);
  }
  if (!isShard(shard)) throw new RangeError(`shard out of range: ${String(shard)}`);
  return auctionNumber * SHARDS_MAX + shard;
}

/** The shard that owns an auction. The caller must have checked `isId`. */
export function shardOfAuction(auctionId: number): number {
  return auctionId % SHARDS_MAX;
}

/** The auction's number within its shard (0 for ids that name no auction). */
export function auctionNumberOf(auctionId: number): number {
  return Math.floor(auctionId / SHARDS_MAX);
}
