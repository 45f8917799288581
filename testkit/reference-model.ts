import { incrementAt, SHARDS_MAX, type Command, type Reason } from '../protocol/index.js';

/**
 * The naive reference model: the rules of docs/engine-core.md over plain objects, with
 * no typed arrays, no heap and no hash table. The fast core must give the same
 * answer to every command of any random stream.
 */
type Auction = {
  number: number;
  seller: number;
  reserve: number;
  startsAt: number;
  endsAt: number;
  softMs: number;
  status: 'scheduled' | 'open' | 'closed' | 'cancelled';
  price: number;
  leader: number;
  leaderMax: number;
  bids: number;
};

export type RefAnswer = {
  status: 'accepted' | 'rejected';
  reason?: Reason;
  auctionId?: number;
  price?: number;
  leading?: boolean;
  leaderId?: number;
  outbidUserId?: number;
  endsAt?: number;
  bidCount?: number;
  version?: number;
  reserveMet?: boolean;
  duplicate?: boolean;
  seq?: number;
  winnerId?: number;
  auctionStatus?: string;
};

const isWhole = (v: number, min: number, max: number) => Number.isInteger(v) && v >= min && v <= max;

export class ReferenceModel {
  private readonly auctions = new Map<number, Auction>();
  private next = 1;
  // Two generations of rememberMax/2 accepted bids: the newer takes inserts,
  // and when it is full the older one is forgotten as a whole.
  private newer = new Map<string, RefAnswer>();
  private older = new Map<string, RefAnswer>();

  constructor(
    private readonly shard: number,
    private readonly capacity: number,
    private readonly rememberMax: number,
  ) {}

  apply(c: Command, seq: number, t: number): RefAnswer {
    switch (c.type) {
      case 'create':
        return this.create(c, t);
      case 'bid':
        return this.bid(c.auctionId, c.bidderId, c.bidId, c.maxBid, seq, t);
      case 'open':
        return this.lifecycle(c.auctionId, t, 'open', false);
      case 'close':
        return this.lifecycle(c.auctionId, t, 'close', c.force);
      case 'cancel':
        return this.lifecycle(c.auctionId, t, 'cancel', true);
    }
  }

  /** The timer command due first at t: smallest (due time, auction number). */
  due(t: number): Command | null {
    let best: Auction | null = null;
    for (const a of this.auctions.values()) {
      if (a.status !== 'scheduled' && a.status !== 'open') continue;
      const at = a.status === 'scheduled' ? a.startsAt : a.endsAt;
      const bestAt = best ? (best.status === 'scheduled' ? best.startsAt : best.endsAt) : Infinity;
      if (at <= t && (at < bestAt || (at === bestAt && a.number < best!.number))) best = a;
    }
    if (!best) return null;
    const auctionId = best.number * SHARDS_MAX + this.shard;
    return best.status === 'scheduled' ? { type: 'open', auctionId } : { type: 'close', auctionId, force: false };
  }

  price(auctionId: number): number | undefined {
    return this.find(auctionId)?.price;
  }

  private create(c: Extract<Command, { type: 'create' }>, t: number): RefAnswer {
    const bad = (reason: Reason): RefAnswer => ({ status: 'rejected', reason, auctionId: 0 });
    if (!isWhole(c.sellerId, 1, 0xffffffff)) return bad('invalid_request');
    if (!isWhole(c.startingPrice, 1, 0xffffffff)) return bad('invalid_amount');
    if (c.reservePrice !== 0 && !(isWhole(c.reservePrice, 1, 0xffffffff) && c.reservePrice >= c.startingPrice))
      return bad('invalid_amount');
    if (!Number.isSafeInteger(c.startsAt) || c.startsAt < 0) return bad('invalid_request');
    if (!Number.isSafeInteger(c.endsAt) || c.endsAt <= Math.max(c.startsAt, t)) return bad('invalid_request');
    if (c.endsAt - t > 400 * 24 * 3_600_000) return bad('invalid_request');
    if (!isWhole(c.softCloseSeconds, 0, 3600)) return bad('invalid_request');
    const evicted = this.auctions.get(this.next - this.capacity);
    if (evicted && (evicted.status === 'scheduled' || evicted.status === 'open')) return bad('shard_full');
    if (evicted) this.auctions.delete(evicted.number);
    const scheduled = c.startsAt > t;
    this.auctions.set(this.next, {
      number: this.next,
      seller: c.sellerId,
      reserve: c.reservePrice,
      startsAt: c.startsAt,
      endsAt: c.endsAt,
      softMs: c.softCloseSeconds * 1000,
      status: scheduled ? 'scheduled' : 'open',
      price: c.startingPrice,
      leader: 0,
      leaderMax: 0,
      bids: 0,
    });
    return { status: 'accepted', auctionId: this.next++ * SHARDS_MAX + this.shard };
  }

  private bid(auctionId: number, bidder: number, bidId: number, max: number, seq: number, t: number): RefAnswer {
    if (!isWhole(bidder, 1, 0xffffffff) || !Number.isSafeInteger(bidId) || bidId < 1)
      return { status: 'rejected', reason: 'invalid_request' };
    const key = `${bidder}/${bidId}`;
    const earlier = this.newer.get(key) ?? this.older.get(key);
    if (earlier && earlier.auctionId !== auctionId) return { status: 'rejected', reason: 'invalid_request' };
    if (earlier) return { ...earlier, duplicate: true };
    if (!isWhole(max, 1, 0xffffffff)) return { status: 'rejected', reason: 'invalid_amount' };
    const exists =
      Number.isSafeInteger(auctionId) &&
      auctionId > 0 &&
      auctionId % SHARDS_MAX === this.shard &&
      Math.floor(auctionId / SHARDS_MAX) >= 1 &&
      Math.floor(auctionId / SHARDS_MAX) < this.next;
    if (!exists) return { status: 'rejected', reason: 'auction_not_found' };
    const a = this.find(auctionId);
    if (!a) return { status: 'rejected', reason: 'auction_closed' }; // archived
    const reject = (reason: Reason): RefAnswer => ({
      ...this.view(a),
      status: 'rejected',
      reason,
      leading: a.leader === bidder,
    });
    if (a.status === 'closed' || a.status === 'cancelled' || (a.status === 'open' && t >= a.endsAt))
      return reject('auction_closed');
    if (a.status === 'scheduled') return reject('auction_not_open');
    if (a.seller === bidder) return reject('seller_cannot_bid');
    const before = { price: a.price, leader: a.leader };
    if (a.leader === 0) {
      if (max < a.price) return reject('bid_too_low');
      a.leader = bidder;
      a.leaderMax = max;
    } else if (a.leader === bidder) {
      if (max <= a.leaderMax) return reject('bid_too_low');
      a.leaderMax = max;
    } else {
      if (max < a.price + incrementAt(a.price)) return reject('bid_too_low');
      if (max > a.leaderMax) {
        a.price = Math.min(max, a.leaderMax + incrementAt(a.leaderMax));
        a.leader = bidder;
        a.leaderMax = max;
      } else {
        a.price = Math.min(a.leaderMax, max + incrementAt(max));
      }
    }
    if (a.reserve > 0 && a.leaderMax >= a.reserve && a.reserve > a.price) a.price = a.reserve;
    if ((a.price !== before.price || a.leader !== before.leader) && t + a.softMs > a.endsAt) a.endsAt = t + a.softMs;
    a.bids++;
    const answer: RefAnswer = {
      ...this.view(a),
      status: 'accepted',
      leading: a.leader === bidder,
      outbidUserId: a.leader !== before.leader && before.leader !== 0 ? before.leader : 0,
      duplicate: false,
      seq,
    };
    if (this.newer.size === Math.floor(this.rememberMax / 2)) {
      this.older = this.newer;
      this.newer = new Map();
    }
    this.newer.set(key, {
      status: 'accepted',
      auctionId,
      price: a.price,
      leading: a.leader === bidder,
      endsAt: a.endsAt,
      seq,
    });
    return answer;
  }

  private lifecycle(auctionId: number, t: number, kind: 'open' | 'close' | 'cancel', force: boolean): RefAnswer {
    const exists =
      Number.isSafeInteger(auctionId) &&
      auctionId > 0 &&
      auctionId % SHARDS_MAX === this.shard &&
      Math.floor(auctionId / SHARDS_MAX) >= 1 &&
      Math.floor(auctionId / SHARDS_MAX) < this.next;
    if (!exists) return { status: 'rejected', reason: 'auction_not_found' };
    const a = this.find(auctionId);
    if (!a || a.status === 'closed' || a.status === 'cancelled')
      return { status: 'rejected', reason: 'auction_closed' };
    const reject = (reason: Reason): RefAnswer => ({ ...this.view(a), status: 'rejected', reason });
    if (kind === 'open') {
      if (a.status === 'open') return reject('invalid_request');
      if (t < a.startsAt) return reject('not_due');
      a.status = 'open';
    } else {
      if (!force && a.status === 'scheduled') return reject('auction_not_open');
      if (!force && t < a.endsAt) return reject('not_due');
      if (force && (t < a.endsAt || a.status === 'scheduled')) a.endsAt = t;
      a.status = kind === 'close' ? 'closed' : 'cancelled';
    }
    return { ...this.view(a), status: 'accepted' };
  }

  private find(auctionId: number): Auction | undefined {
    return this.auctions.get(Math.floor(auctionId / SHARDS_MAX));
  }

  /** The public view of an auction as the core's auctionState gives it, or null. */
  state(auctionId: number): (Omit<RefAnswer, 'status'> & { status: Auction['status'] }) | null {
    const a = this.find(auctionId);
    if (!a || Math.floor(auctionId / SHARDS_MAX) >= this.next || auctionId % SHARDS_MAX !== this.shard) return null;
    return { ...this.view(a), status: a.status };
  }

  private view(a: Auction): Omit<RefAnswer, 'status'> & { auctionStatus: Auction['status'] } {
    const reserveMet = a.reserve > 0 && a.leader !== 0 && a.leaderMax >= a.reserve;
    const rank = a.status === 'scheduled' ? 1 : a.status === 'open' ? 2 : 3;
    return {
      price: a.price,
      leaderId: a.leader,
      endsAt: a.endsAt,
      bidCount: a.bids,
      version: a.bids + rank,
      reserveMet,
      winnerId: a.status === 'closed' && a.leader !== 0 && (a.reserve === 0 || reserveMet) ? a.leader : 0,
      auctionStatus: a.status,
    };
  }
}

/**
 * Where an engine's outcome differs from the reference answer: every key the
 * reference gives and the outcome carries (lifecycle answers carry no leader
 * or bid count, bid answers no winner; state comparisons cover those).
 */
export function outcomeDifferences(outcome: object, reference: RefAnswer): string[] {
  const mine = outcome as Record<string, unknown>;
  const found: string[] = [];
  for (const [key, value] of Object.entries(reference)) {
    if (key in mine && !Object.is(mine[key], value))
      found.push(`${key} is ${String(mine[key])}, reference says ${String(value)}`);
  }
  return found;
}
