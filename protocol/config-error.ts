import { SHARDS_MAX } from './ids.js';

/**
 * A process's flags or environment are wrong: it prints the message, not a
 * stack trace, and exits.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A shard list such as `0,1,2` or `0-7` (flags of the engine, the audit and auctionctl). */
export function parseShards(text: string): number[] {
  const shards = new Set<number>();
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!range) throw new ConfigError(`bad shard list item: ${part}`);
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    if (to < from || to >= SHARDS_MAX) throw new ConfigError(`shards must be in 0..${SHARDS_MAX - 1}: ${part}`);
    for (let s = from; s <= to; s++) shards.add(s);
  }
  if (shards.size === 0) throw new ConfigError('no shards given');
  return [...shards].sort((a, b) => a - b);
}
