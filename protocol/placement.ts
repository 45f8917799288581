import { createHash } from 'node:crypto';

/**
 * Rendezvous (highest random weight) hashing of shards onto engines: each
 * shard goes to the engine with the highest score hash(engine, shard). When an
 * engine joins it takes only the shards it now scores highest on; when one
 * leaves only its shards move. Every process computes the same answer from
 * the same list of live engines, with no coordination.
 */
export function score(engineId: string, shard: number): bigint {
  return createHash('sha256').update(`${engineId}\u0000${shard}`).digest().readBigUInt64BE(0);
}

export function ownerOf(shard: number, engines: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1n;
  for (const engine of engines) {
    const s = score(engine, shard);
    if (s > bestScore || (s === bestScore && best !== null && engine < best)) {
      best = engine;
      bestScore = s;
    }
  }
  return best;
}

/** Shards per engine for a cluster of `shardCount` shards. */
export function placement(shardCount: number, engines: readonly string[]): Map<string, number[]> {
  const result = new Map<string, number[]>(engines.map((e) => [e, []]));
  for (let shard = 0; shard < shardCount; shard++) {
    const owner = ownerOf(shard, engines);
    if (owner) result.get(owner)!.push(shard);
  }
  return result;
}
