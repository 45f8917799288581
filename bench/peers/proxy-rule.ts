import { INCREMENT_TABLE, incrementAt } from '../../protocol/money.js';
import type { PeerOutcome } from './design.js';

/**
 * The rules of bidding the peers apply (docs/engine-core.md#rules-of-bidding,
 * without reserves and sellers, which the bench's auctions do not have):
 * proxy bidding with eBay's increment table, equal maxima keep the earlier
 * leader, a leader may only raise their own maximum, soft close. One copy
 * in TypeScript (the Postgres and JetStream peers' deciders run it, and the
 * tests hold the Lua and SQL copies to it) and the table generated into the
 * Lua and PL/pgSQL copies from protocol/money.ts, so no increment is written
 * twice.
 */
export type PeerAuctionState = { price: number; leaderId: number; leaderMax: number; endsAt: number; bidCount: number };

export type ProxyDecision = PeerOutcome & { state: PeerAuctionState };

export function decideProxyBid(
  s: PeerAuctionState,
  bidderId: number,
  maxBid: number,
  at: number,
  softCloseMs: number,
): ProxyDecision {
  const reject = (reason: 'auction_closed' | 'bid_too_low'): ProxyDecision => ({
    status: 'rejected',
    reason,
    price: s.price,
    leading: s.leaderId === bidderId,
    endsAt: s.endsAt,
    seq: s.bidCount,
    state: s,
  });
  if (at >= s.endsAt) return reject('auction_closed');
  let price = s.price;
  let leaderId = bidderId;
  let leaderMax = maxBid;
  if (s.leaderId === 0) {
    if (maxBid < s.price) return reject('bid_too_low');
  } else if (s.leaderId === bidderId) {
    if (maxBid <= s.leaderMax) return reject('bid_too_low');
  } else {
    if (maxBid < s.price + incrementAt(s.price)) return reject('bid_too_low');
    if (maxBid > s.leaderMax) price = Math.min(maxBid, s.leaderMax + incrementAt(s.leaderMax));
    else {
      leaderId = s.leaderId;
      leaderMax = s.leaderMax;
      price = Math.min(s.leaderMax, maxBid + incrementAt(maxBid));
    }
  }
  const moved = price !== s.price || leaderId !== s.leaderId;
  const endsAt = moved && s.endsAt - at < softCloseMs ? at + softCloseMs : s.endsAt;
  const state = { price, leaderId, leaderMax, endsAt, bidCount: s.bidCount + 1 };
  return { status: 'accepted', price, leading: leaderId === bidderId, endsAt, seq: state.bidCount, state };
}

/** The increment table as a chain of comparisons in another language's syntax, from INCREMENT_TABLE. */
function incrementChain(line: (below: number, increment: number) => string, last: string): string {
  return INCREMENT_TABLE.map(([below, increment]) =>
    below === Infinity ? last.replace('%', String(increment)) : line(below, increment),
  ).join('\n');
}

/** `local function inc(p) ... end` for the Redis peer's script. */
export function luaIncrement(): string {
  return `local function inc(p)\n${incrementChain(
    (below, increment) => `  if p < ${below} then return ${increment} end`,
    '  return %',
  )}\nend`;
}

/** `bench_increment(p bigint) RETURNS bigint` for the Postgres peer. */
export function sqlIncrement(): string {
  const cases = incrementChain((below, increment) => `    WHEN p < ${below} THEN ${increment}`, '    ELSE %');
  return `CREATE OR REPLACE FUNCTION bench_increment(p bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$\n  SELECT CASE\n${cases}\n  END\n$$;`;
}
