import { WIRE_LIMITS, type CreateOutcome, type EngineClient } from '../../protocol/index.js';
import { auctionTitle } from './catalog.js';

export type FillOptions = {
  /** Requests of WIRE_LIMITS.requestCommandsMax creations each, in flight per shard at once (as a gateway sends). */
  inFlightPerShard?: number;
  /** Creations per second over all shards at most (0: as fast as the answers come). */
  ratePerSec?: number;
  /** Lot numbers (titles) start after this. */
  firstLot: number;
  /** Seconds from now after which the auctions start to end (spread over a day after it). */
  endsAfterS: number;
  onProgress?: (created: number) => void;
};

/** Consecutive requests answered with nothing created before the fill gives up. */
const FAILED_REQUESTS_MAX = 200;
const DAY_MS = 86_400_000;

/**
 * Lists `perShard` auctions on every shard through the engines' command
 * path, batched as the gateway batches (full requests of 1,024, a few in
 * flight per shard); creations refused as retry-safe (`unavailable`,
 * `overloaded`) are sent again. Returns the created ids per shard.
 */
export async function fillAuctions(
  client: EngineClient,
  shards: number[],
  perShard: number,
  options: FillOptions,
): Promise<Float64Array[]> {
  const inFlight = options.inFlightPerShard ?? 8;
  const endsFrom = Date.now() + options.endsAfterS * 1_000;
  let created = 0;
  let lot = options.firstLot;
  // Pacing: the k-th creation sent (over all shards) is not sent before startedAt + k / rate.
  const startedAt = Date.now();
  let scheduled = 0;
  const paced = async (n: number) => {
    if (!options.ratePerSec) return;
    scheduled += n;
    const due = startedAt + (scheduled * 1_000) / options.ratePerSec - Date.now();
    if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
  };
  const command = () => {
    const n = ++lot;
    return {
      type: 'create',
      sellerId: 1 + (n % 5_000),
      startingPrice: 100,
      reservePrice: 0,
      startsAt: 0,
      endsAt: endsFrom + ((n * 7_919) % DAY_MS),
      softCloseSeconds: 60,
      title: auctionTitle(n),
      description: '',
    };
  };
  const fillShard = async (shard: number): Promise<Float64Array> => {
    const ids = new Float64Array(perShard);
    let reserved = 0;
    let done = 0;
    let failures = 0;
    let lastError = '';
    const sender = async () => {
      while (reserved < perShard) {
        const n = Math.min(WIRE_LIMITS.requestCommandsMax, perShard - reserved);
        reserved += n;
        await paced(n);
        const results = await client.send(
          shard,
          Array.from({ length: n }, () => command()),
        );
        let accepted = 0;
        for (const r of results) {
          if (r.status === 'accepted') ids[done + accepted++] = (r as CreateOutcome).auctionId;
          else lastError = JSON.stringify(r);
        }
        done += accepted;
        created += accepted;
        reserved -= n - accepted;
        options.onProgress?.(created);
        if (accepted > 0) failures = 0;
        else if (++failures > FAILED_REQUESTS_MAX)
          throw new Error(`shard ${shard}: ${failures} requests created nothing; the last answer: ${lastError}`);
        if (accepted < n) await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await Promise.all(Array.from({ length: inFlight }, sender));
    return ids;
  };
  return Promise.all(shards.map(fillShard));
}
