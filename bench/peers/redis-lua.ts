import { Redis } from 'ioredis';
import type { PeerAuctions, PeerBid, PeerDesign, PeerOutcome } from './design.js';
import { luaIncrement } from './proxy-rule.js';

/**
 * The "cache the max bid" design: Redis holds each auction's price, leader
 * and maximum in a hash; one Lua script per bid (atomic: Redis runs one
 * script at a time) checks the bid against them, applies the proxy rule,
 * appends the bid to the auction's history stream, remembers the outcome for
 * retries, and returns it. Durability is Redis's append-only file, written
 * before the reply: `appendfsync always` fsyncs it before replying (once per
 * event-loop turn, for every reply of that turn), `everysec` once a second.
 * One connection with auto-pipelining: every bid of a tick leaves in one
 * write, as redis-benchmark's pipelining does, which is Redis at its best.
 */
const SCRIPT = `${luaIncrement()}
local cached = redis.call('GET', KEYS[3])
if cached then return cached end
local a = redis.call('HMGET', KEYS[1], 'p', 'l', 'm', 'e', 'n')
if not a[1] then return 'r|auction_not_found|0|0|0|0' end
local price, leader, lmax, ends, count = tonumber(a[1]), tonumber(a[2]), tonumber(a[3]), tonumber(a[4]), tonumber(a[5])
local bidder, maxbid, at, soft = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function f(x) return string.format('%d', x) end
local function outcome(status, reason, p, lead, e, seq)
  local r = status .. '|' .. reason .. '|' .. f(p) .. '|' .. lead .. '|' .. f(e) .. '|' .. f(seq)
  redis.call('XADD', KEYS[2], '*', 'b', ARGV[1], 'i', ARGV[5], 'm', ARGV[2], 'o', r)
  redis.call('SET', KEYS[3], r, 'EX', 86400)
  return r
end
local function reject(reason)
  local lead = 0
  if leader == bidder then lead = 1 end
  return outcome('r', reason, price, lead, ends, count)
end
if at >= ends then return reject('auction_closed') end
local np, nl, nm = price, bidder, maxbid
if leader == 0 then
  if maxbid < price then return reject('bid_too_low') end
elseif leader == bidder then
  if maxbid <= lmax then return reject('bid_too_low') end
else
  if maxbid < price + inc(price) then return reject('bid_too_low') end
  if maxbid > lmax then
    np = math.min(maxbid, lmax + inc(lmax))
  else
    nl, nm = leader, lmax
    np = math.min(lmax, maxbid + inc(maxbid))
  end
end
local ne = ends
if (np ~= price or nl ~= leader) and ends - at < soft then ne = at + soft end
redis.call('HSET', KEYS[1], 'p', f(np), 'l', f(nl), 'm', f(nm), 'e', f(ne), 'n', f(count + 1))
local lead = 0
if nl == bidder then lead = 1 end
return outcome('a', '', np, lead, ne, count + 1)
`;

type Scripted = Redis & {
  placeBid(auction: string, history: string, done: string, ...argv: (string | number)[]): Promise<string>;
};

export class RedisLuaDesign implements PeerDesign {
  readonly description: string;

  private constructor(
    private readonly redis: Scripted,
    private readonly softCloseMs: number,
    appendfsync: string,
  ) {
    this.description = `Redis Lua compare-and-set of the max bid + XADD to the auction's history stream per bid, appendonly yes, appendfsync ${appendfsync}, one auto-pipelined connection`;
  }

  static async open(url: string, auctions: PeerAuctions): Promise<RedisLuaDesign> {
    const redis = new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 0, lazyConnect: true });
    await redis.connect();
    redis.defineCommand('placeBid', { numberOfKeys: 3, lua: SCRIPT });
    const fsync = (await redis.config('GET', 'appendfsync'))[1] ?? 'unknown';
    const appendonly = (await redis.config('GET', 'appendonly'))[1];
    if (appendonly !== 'yes') throw new Error(`the Redis peer needs appendonly yes (the server has ${appendonly})`);
    await redis.flushall();
    for (let from = 1; from <= auctions.count; from += 1_000) {
      const batch = redis.pipeline();
      for (let id = from; id < Math.min(from + 1_000, auctions.count + 1); id++)
        batch.hset(`a:${id}`, 'p', auctions.startingPrice, 'l', 0, 'm', 0, 'e', auctions.endsAt, 'n', 0);
      await batch.exec();
    }
    return new RedisLuaDesign(redis as Scripted, auctions.softCloseMs, fsync);
  }

  async decide(bid: PeerBid): Promise<PeerOutcome> {
    const reply = await this.redis.placeBid(
      `a:${bid.auctionId}`,
      `h:${bid.auctionId}`,
      `i:${bid.bidderId}:${bid.bidId}`,
      bid.bidderId,
      bid.maxBid,
      bid.at,
      this.softCloseMs,
      bid.bidId,
    );
    return parseReply(reply);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** `status|reason|price|leading|endsAt|seq`, as the script answers. */
export function parseReply(reply: string): PeerOutcome {
  const [status, reason, price, leading, endsAt, seq] = reply.split('|');
  return {
    status: status === 'a' ? 'accepted' : 'rejected',
    ...(reason ? { reason: reason as PeerOutcome['reason'] } : {}),
    price: Number(price),
    leading: leading === '1',
    endsAt: Number(endsAt),
    seq: Number(seq),
  };
}
