import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp, type WebSocket, type us_listen_socket } from 'uWebSockets.js';
import { Packr, Unpackr } from 'msgpackr';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  decode, encode, shardOfAuction, WIRE_LIMITS, type AuctionState, type BidOutcome, type CommandResult, type CreateOutcome,
} from '../protocol/index.js';
import { auditSubject } from '../audit/shard-audit.js';
import { encodeCursor } from '../audit/queries.js';
import { ApiError, asApiError } from './errors.js';
import { answer, bearer, Exchange, FramingGuard, nextRequestId, queryOf, readJson } from './http.js';
import { ConnectionLimits } from './connection-limits.js';
import type { LiveFeed, LiveState } from './live.js';
import type { Metrics } from './metrics.js';
import type { Notification, NotificationCenter } from './notifications.js';
import { KeyedLimiter, TokenBucket } from './rate-limit.js';
import type { CommandRouter } from './router.js';
import type { Tokens, UserStore } from './auth.js';
import { PASSWORD_LIMITS, USERNAME_PATTERN } from './auth.js';
import type { GatewayConfig } from './config.js';
import * as v from './validate.js';

/** Client msgpack is plain maps both ways (no msgpackr records), for any client library. */
const clientPackr = new Packr({ useRecords: false });
const clientUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

const SUBSCRIBE_IDS_MAX = 100;
const RID_CHARS_MAX = 64;
const SSE_HEARTBEAT_MS = 15_000;
const SWEEP_MS = 10_000;
const AUDIT_TIMEOUT_MS = 2_000;

type Format = 't' | 'b';

/** Search sorts and the column each one orders by (a Map: a name like `constructor` must not find anything). */
const SORT_COLUMNS = new Map([['ending_soon', 'endsAt'], ['newest', 'createdAt'], ['price', 'price']]);
/** Reads cost one token of the address's budget; these cost more (a Prometheus render is not cheap). */
const METRICS_READ_COST = 10;

/** What the gateway keeps per WebSocket connection. */
type Connection = {
  userId: number;
  /** The client's address, for the per-address connection count. */
  address: string;
  /** The unacknowledged notifications being sent, or sent, on this connection (once per connection). */
  backlog: Promise<void> | null;
  /** Auctions subscribed, with the format their updates go out in. */
  subs: Map<number, Format>;
  /** Subscribes in progress (counted against the limit, not yet in `subs`). */
  joining: number;
  format: Format;
  bucket: TokenBucket;
  closed: boolean;
  /** The socket hit backpressure: some broadcasts may have been dropped; resend states when drained. */
  behind: boolean;
};

type SseStream = { ex: Exchange; lastVersion: number; congested: boolean };

/** A Last-Event-ID (or `lastEventId`) is a version: digits only (`1e3` is not 1000), below 2^53. */
function resumeVersion(text: string): number {
  return /^[0-9]{1,16}$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : 0;
}

export type GatewayDeps = {
  config: GatewayConfig;
  logger: Logger;
  nc: NatsConnection;
  router: CommandRouter;
  live: LiveFeed;
  notifications: NotificationCenter;
  tokens: Tokens;
  users: UserStore;
  metrics: Metrics;
};

/**
 * The public API v1 on uWebSockets.js: HTTP routes, the WebSocket and SSE.
 * Stateless: every durable thing lives in NATS (engines, streams, KV), so any
 * number of gateways can serve behind a load balancer. See docs/gateway.md.
 */
export class GatewayServer {
  readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private readonly userLimiter: KeyedLimiter<number>;
  private readonly addressLimiter: KeyedLimiter<string>;
  private readonly readLimiter: KeyedLimiter<string>;
  private readonly limits: ConnectionLimits;
  private readonly framing = new FramingGuard();
  /** Addresses with a password hash in progress (bounded by the hashes in flight and queued). */
  private readonly hashing = new Set<string>();
  private readonly sse = new Map<number, Set<SseStream>>();
  private readonly sockets = new Set<WebSocket<Connection>>();
  private subscriptionCount = 0;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly d: GatewayDeps) {
    const c = d.config;
    this.userLimiter = new KeyedLimiter(c.userCommandsPerSec, c.userCommandsPerSec * 2);
    this.addressLimiter = new KeyedLimiter(c.addressAuthPerSec, c.addressAuthPerSec * 2);
    // A reader over its budget gets its rate, not nothing: refused reads are not charged.
    this.readLimiter = new KeyedLimiter(c.addressReadsPerSec, c.addressReadsPerSec * 2, 1_000_000, Date.now, false);
    this.limits = new ConnectionLimits(c);
    this.app = uWS.App();
    this.routes();
    this.timers.push(setInterval(() => this.heartbeatSse(), SSE_HEARTBEAT_MS));
    this.timers.push(setInterval(() => {
      this.userLimiter.sweep();
      this.addressLimiter.sweep();
      this.readLimiter.sweep();
      d.metrics.watchedAuctions.set(d.live.watched);
    }, SWEEP_MS));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.d.config.host, this.d.config.port, (socket) => {
        if (!socket) {
          reject(new Error(`cannot listen on ${this.d.config.host}:${this.d.config.port}`));
          return;
        }
        this.listenSocket = socket;
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  /** Stops listening and closes every connection. */
  close(): void {
    for (const t of this.timers) clearInterval(t);
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    for (const ws of [...this.sockets]) ws.cork(() => ws.end(1001, 'gateway stopping'));
    for (const streams of this.sse.values()) for (const s of streams) if (!s.ex.aborted) s.ex.res.close();
  }

  // --- live fan-out (called by LiveFeed and NotificationCenter) ---------------------

  /** New states of watched auctions, once per turn of the event loop: one message per auction and format. */
  publishStates(states: LiveState[]): void {
    for (const state of states) {
      const message = { type: 'auction.state', ...state };
      const text = `a/${state.auctionId}/t`;
      const binary = `a/${state.auctionId}/b`;
      if (this.app.numSubscribers(text) > 0) this.app.publish(text, JSON.stringify(message), false);
      if (this.app.numSubscribers(binary) > 0) this.app.publish(binary, clientPackr.pack(message), true);
      const streams = this.sse.get(state.auctionId);
      if (streams) for (const s of streams) this.writeSse(s, state);
      this.d.metrics.stateUpdates.inc();
    }
  }

  deliverNotification(userId: number, notification: Notification): void {
    const message = { type: 'notification', ...notification };
    const text = `u/${userId}/t`;
    const binary = `u/${userId}/b`;
    let pushed = false;
    if (this.app.numSubscribers(text) > 0) pushed = this.app.publish(text, JSON.stringify(message), false) || pushed;
    if (this.app.numSubscribers(binary) > 0) pushed = this.app.publish(binary, clientPackr.pack(message), true) || pushed;
    if (pushed) this.d.metrics.notificationsPushed.inc();
  }

  // --- HTTP ------------------------------------------------------------------------

  private routes(): void {
    const app = this.app;
    const c = this.d.config;
    const unexpected = (error: unknown, requestId: string) => this.d.logger.error({ err: error, requestId }, 'unexpected error');
    /** Every request: framing checked, GETs charged to the address's read budget (`readCost`), errors answered. */
    const route = (method: 'get' | 'post', pattern: string, handler: (ex: Exchange, req: HttpRequest) => Promise<void>, readCost: () => number = () => 1) => {
      app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
        const ex = new Exchange(res);
        if (this.refuseFraming(ex, req)) return;
        // The handler starts synchronously (uWS's `req` is valid only now); all it throws becomes the answer.
        answer(ex, async () => {
          if (method === 'get') this.limitReads(ex.address, readCost());
          await handler(ex, req);
        }, unexpected);
      });
    };

    route('post', '/v1/users', async (ex, req) => {
      const body = readJson(ex, req, c.bodyBytesMax);
      this.limitAddress(ex);
      const fields = v.object(await body);
      const username = v.string(fields, 'username', { min: 3, max: 32, pattern: USERNAME_PATTERN });
      const password = v.string(fields, 'password', PASSWORD_LIMITS);
      ex.json(201, await this.hashingFor(ex, () => this.d.users.register(username, password)));
    });

    route('post', '/v1/sessions', async (ex, req) => {
      const body = readJson(ex, req, c.bodyBytesMax);
      this.limitAddress(ex);
      const fields = v.object(await body);
      const username = v.string(fields, 'username', { min: 1, max: 32 });
      const password = v.string(fields, 'password', { min: 1, max: PASSWORD_LIMITS.max });
      const userId = this.d.tokens.checkEnabled(await this.hashingFor(ex, () => this.d.users.authenticate(username, password)));
      ex.json(200, { ...this.d.tokens.mint(userId), userId });
    });

    route('post', '/v1/auctions', async (ex, req) => {
      const token = bearer(req);
      const body = readJson(ex, req, c.bodyBytesMax);
      const userId = this.d.tokens.verify(token);
      const fields = v.object(await body);
      this.limitUser(userId);
      ex.json(201, await this.createAuction(userId, fields));
    });

    // A search asks every shard's read model: it costs as many reads.
    route('get', '/v1/auctions', async (ex, req) => {
      const query = queryOf(req);
      ex.json(200, await this.search(query));
    }, () => Math.max(1, this.d.live.knownShards().length));

    route('get', '/v1/auctions/:id', async (ex, req) => {
      const auctionId = v.idParam(req.getParameter(0), 'auction id');
      const auction = await this.auctionDetails(auctionId);
      if (!auction) throw new ApiError('not_found', `no auction ${auctionId}`);
      ex.json(200, auction);
    });

    route('post', '/v1/auctions/:id/bids', async (ex, req) => {
      const token = bearer(req);
      const param = req.getParameter(0);
      const body = readJson(ex, req, c.bodyBytesMax);
      const userId = this.d.tokens.verify(token);
      const auctionId = v.idParam(param, 'auction id');
      const result = await this.bid(userId, { ...v.object(await body), auctionId });
      ex.json(200, result);
    });

    route('get', '/v1/auctions/:id/bids', async (ex, req) => {
      const token = bearer(req);
      const auctionId = v.idParam(req.getParameter(0), 'auction id');
      const query = queryOf(req);
      // History is public; a valid token only adds the viewer's own maxima.
      const viewerId = token ? this.d.tokens.verify(token) : 0;
      const after = v.optionalCountParam(query.get('after') ?? '', 'after');
      const limit = v.optionalCountParam(query.get('limit') ?? '', 'limit', 100);
      if (limit === 0) throw new ApiError('invalid_request', 'limit must be 1 to 100');
      const shard = shardOfAuction(auctionId);
      if (this.d.live.knownMissing(auctionId) || !(await this.d.live.hasShard(shard))) throw new ApiError('not_found', `no auction ${auctionId}`);
      // The read model lags the engine: an auction it does not have yet is not known to be missing.
      const exists = await this.audit<{ auction: unknown }>(shard, { op: 'auction', auctionId });
      if (!exists.auction) throw new ApiError('not_found', `no auction ${auctionId}`);
      ex.json(200, await this.audit(shard, { op: 'bids', auctionId, after, limit, viewerId }));
    });

    app.get('/v1/auctions/:id/events', (res, req) => {
      const ex = new Exchange(res);
      if (!this.refuseFraming(ex, req)) this.openSse(ex, req);
    });

    route('get', '/v1/me/notifications', async (ex, req) => {
      const token = bearer(req);
      const query = queryOf(req);
      const userId = this.d.tokens.verify(token);
      const after = v.optionalCountParam(query.get('after') ?? '', 'after') ?? 0;
      ex.json(200, { notifications: await this.d.notifications.unacknowledged(userId, after) });
    });

    route('post', '/v1/me/notifications/ack', async (ex, req) => {
      const token = bearer(req);
      const body = readJson(ex, req, c.bodyBytesMax);
      const userId = this.d.tokens.verify(token);
      const upTo = v.id(v.object(await body), 'upTo');
      await this.d.notifications.acknowledge(userId, upTo);
      ex.send(204, '', {});
    });

    // Liveness probes are local and cheap: not charged, so a busy address cannot make a gateway look dead.
    route('get', '/healthz', async (ex) => {
      const nats = !this.d.nc.isClosed() && this.d.nc.info !== undefined;
      ex.json(nats ? 200 : 503, { status: nats ? 'ok' : 'degraded', nats, shards: this.d.live.positions(), connections: this.sockets.size });
    }, () => 0);

    route('get', '/metrics', async (ex) => {
      ex.send(200, await this.d.metrics.registry.metrics(), { 'Content-Type': this.d.metrics.registry.contentType });
    }, () => METRICS_READ_COST);

    app.ws<Connection>('/v1/ws', {
      maxPayloadLength: c.frameBytesMax,
      maxBackpressure: c.backpressureBytesMax,
      closeOnBackpressureLimit: 0,
      idleTimeout: c.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.onOpen(ws),
      message: (ws, message, isBinary) => this.onMessage(ws, message, isBinary),
      drain: (ws) => this.onDrain(ws),
      close: (ws) => this.onClose(ws),
    });

    // Known paths with another method: 405; anything else: 404.
    for (const pattern of ['/v1/users', '/v1/sessions', '/v1/auctions', '/v1/auctions/:id', '/v1/auctions/:id/bids', '/v1/auctions/:id/events', '/v1/me/notifications', '/v1/me/notifications/ack', '/healthz', '/metrics']) {
      app.any(pattern, (res, req) => {
        const ex = new Exchange(res);
        if (!this.refuseFraming(ex, req)) ex.error(new ApiError('method_not_allowed'));
      });
    }
    app.any('/*', (res, req) => {
      const ex = new Exchange(res);
      if (!this.refuseFraming(ex, req)) ex.error(new ApiError('not_found'));
    });
  }

  /** A request whose length is ambiguous is answered 400 and its connection closed (nothing after it can be trusted). */
  private refuseFraming(ex: Exchange, req: HttpRequest): boolean {
    const error = this.framing.check(req, ex.address);
    if (!error) return false;
    this.refuse(ex, error, true);
    return true;
  }

  /** An error answer given before any handler ran (framing, SSE and upgrade refusals), counted like the WebSocket's. */
  private refuse(ex: Exchange, error: ApiError, closeConnection = false): void {
    this.d.metrics.errors.inc({ code: error.code });
    ex.error(error, closeConnection);
  }

  /** Charges reads to the client address's budget; `rate_limited` when it is spent. */
  private limitReads(address: string, cost: number): void {
    if (cost === 0 || this.readLimiter.take(address, cost)) return;
    this.d.metrics.rateLimited.inc({ scope: 'reads' });
    throw new ApiError('rate_limited', 'too many reads from this address', { retryAfterSeconds: 1 });
  }

  /**
   * One registration or sign-in at a time per client address: each costs a
   * password hash (~0.4 s of a core), and the hashing queue is shared by
   * everyone, so one address must not be able to fill it.
   */
  private async hashingFor<T>(ex: Exchange, work: () => Promise<T>): Promise<T> {
    if (this.hashing.has(ex.address)) {
      this.d.metrics.rateLimited.inc({ scope: 'address' });
      throw new ApiError('rate_limited', 'one sign-in or registration at a time from an address', { retryAfterSeconds: 1 });
    }
    this.hashing.add(ex.address);
    try {
      return await work();
    } finally {
      this.hashing.delete(ex.address);
    }
  }

  private limitAddress(ex: Exchange): void {
    if (!this.addressLimiter.take(ex.address)) {
      this.d.metrics.rateLimited.inc({ scope: 'address' });
      throw new ApiError('rate_limited', 'too many logins or registrations from this address', { retryAfterSeconds: 1 });
    }
  }

  /** One command of the user's budget; false (counted) when it is spent. */
  private userAllowed(userId: number): boolean {
    if (this.userLimiter.take(userId)) return true;
    this.d.metrics.rateLimited.inc({ scope: 'user' });
    return false;
  }

  private limitUser(userId: number): void {
    if (!this.userAllowed(userId)) throw new ApiError('rate_limited', undefined, { retryAfterSeconds: 1 });
  }

  // --- operations shared by HTTP and WebSocket ---------------------------------------

  /** A bid for the acting user; rejections (including rate limits and unavailability) are BidResults. */
  private async bid(userId: number, fields: v.Fields): Promise<Record<string, unknown>> {
    const auctionId = v.id(fields, 'auctionId');
    const bidId = v.id(fields, 'bidId');
    const maxBid = v.amount(fields, 'maxBid');
    if (!this.userAllowed(userId)) return this.unrecordedRejection(auctionId, bidId, 'rate_limited');
    if (!(await this.d.live.hasShard(shardOfAuction(auctionId)))) return this.unrecordedRejection(auctionId, bidId, 'auction_not_found');
    const started = process.hrtime.bigint();
    const result = await this.d.router.forAuction(auctionId, { type: 'bid', auctionId, bidderId: userId, bidId, maxBid });
    this.d.metrics.commandSeconds.observe({ type: 'bid' }, Number(process.hrtime.bigint() - started) / 1e9);
    return this.bidResult(result, auctionId, bidId);
  }

  /** A rejection decided without the engine (nothing was logged: seq 0). */
  private unrecordedRejection(auctionId: number, bidId: number, reason: 'rate_limited' | 'auction_not_found' | 'unavailable'): Record<string, unknown> {
    this.d.metrics.bids.inc({ outcome: reason });
    return { bidId, auctionId, status: 'rejected', reason, price: 0, leading: false, endsAt: 0, seq: 0 };
  }

  private bidResult(result: CommandResult, auctionId: number, bidId: number): Record<string, unknown> {
    if (result.status === 'error') {
      if (result.code === 'unavailable') return this.unrecordedRejection(auctionId, bidId, 'unavailable');
      this.d.metrics.bids.inc({ outcome: result.code });
      throw new ApiError('invalid_request', result.message);
    }
    const o = result as BidOutcome;
    this.d.metrics.bids.inc({ outcome: o.status === 'accepted' ? 'accepted' : o.reason ?? 'rejected' });
    const answer: Record<string, unknown> = {
      bidId: o.bidId, auctionId: o.auctionId, status: o.status, price: o.price, leading: o.leading, endsAt: o.endsAt, seq: o.seq,
      version: o.version, bidCount: o.bidCount,
    };
    if (o.reason) answer.reason = o.reason;
    if (o.duplicate) answer.duplicate = true;
    return answer;
  }

  private async createAuction(sellerId: number, fields: v.Fields): Promise<Record<string, unknown>> {
    const title = v.string(fields, 'title', { min: 1, max: WIRE_LIMITS.titleCharsMax });
    const description = v.optionalString(fields, 'description', WIRE_LIMITS.descriptionCharsMax) ?? '';
    const imageUrl = v.optionalString(fields, 'imageUrl', WIRE_LIMITS.imageUrlCharsMax) ?? '';
    if (imageUrl && !/^https?:\/\/\S+$/i.test(imageUrl)) throw new ApiError('invalid_request', 'imageUrl must be an http(s) URL');
    const command = {
      type: 'create', sellerId, title, description, imageUrl,
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
    if (result.status === 'error') throw new ApiError(result.code === 'unavailable' ? 'unavailable' : 'invalid_request', result.message);
    const o = result as CreateOutcome;
    if (o.status === 'rejected') {
      if (o.reason === 'shard_full' || o.reason === 'unavailable') throw new ApiError('unavailable', `auction not created: ${o.reason}`);
      throw new ApiError('invalid_request', `auction not created: ${o.reason}`);
    }
    this.d.live.forgetMissing(o.auctionId);
    const state = await this.engineState(o.auctionId);
    return {
      id: o.auctionId, sellerId, title, description, imageUrl, startingPrice: command.startingPrice,
      startsAt: state?.startsAt || command.startsAt || null, endsAt: state?.endsAt ?? command.endsAt, softCloseSeconds: command.softCloseSeconds,
      status: state?.status ?? o.auctionStatus, price: state?.price ?? command.startingPrice, leaderId: null, bidCount: 0, version: state?.version ?? 1,
      hasReserve: command.reservePrice > 0, reserveMet: false,
    };
  }

  /** The engine's state, or null when it does not hold the auction or does not answer. */
  private engineState(auctionId: number): Promise<AuctionState | null> {
    return this.d.live.engineState(auctionId).catch(() => null);
  }

  /**
   * An auction's details from the read model, with the live fields replaced
   * by this gateway's fresher state when it has one. Just after creation the
   * read model may not have the auction yet: the engine's state answers then.
   */
  private async auctionDetails(auctionId: number): Promise<Record<string, unknown> | null> {
    const shard = shardOfAuction(auctionId);
    if (this.d.live.knownMissing(auctionId) || !(await this.d.live.hasShard(shard))) return null;
    const startedAt = this.d.live.lookupStarted();
    let { auction } = await this.audit<{ auction: Record<string, unknown> | null }>(shard, { op: 'auction', auctionId });
    if (!auction) {
      // ApiError `unavailable` (503, retry is safe) when the engine does not answer: not a 404.
      const state = await this.d.live.engineState(auctionId);
      if (!state) {
        this.d.live.noteMissing(auctionId, startedAt);
        return null;
      }
      auction = {
        id: auctionId, sellerId: state.sellerId, title: '', description: '', imageUrl: '', startingPrice: null, startsAt: state.startsAt || null,
        endsAt: state.endsAt, softCloseSeconds: state.softCloseSeconds, status: state.status, price: state.price, leaderId: state.leaderId || null,
        bidCount: state.bidCount, version: state.version, hasReserve: state.hasReserve, reserveMet: state.reserveMet, pending: true,
      };
    }
    const live = this.d.live.current(auctionId);
    if (live && live.version > (auction.version as number)) {
      Object.assign(auction, { price: live.price, leaderId: live.leaderId || null, bidCount: live.bidCount, endsAt: live.endsAt, status: live.status, version: live.version, reserveMet: live.reserveMet });
      if (live.winnerId) auction.winnerId = live.winnerId;
    }
    return auction;
  }

  /** Search scattered over every shard's read model, merged by the same (sort value, id) order each shard used. */
  private async search(query: URLSearchParams): Promise<{ auctions: unknown[]; next: string | null }> {
    const sort = query.get('sort') ?? 'ending_soon';
    const column = SORT_COLUMNS.get(sort);
    if (!column) throw new ApiError('invalid_request', 'sort must be ending_soon, newest or price');
    const limit = v.optionalCountParam(query.get('limit') ?? '', 'limit', 100) ?? 20;
    if (limit === 0) throw new ApiError('invalid_request', 'limit must be 1 to 100');
    const sellerParam = query.get('sellerId');
    const request = {
      op: 'search', sort, limit,
      q: query.get('q') ?? undefined,
      status: query.get('status') ?? undefined,
      sellerId: sellerParam === null ? undefined : v.idParam(sellerParam, 'sellerId'),
      cursor: query.get('cursor') ?? undefined,
    };
    const shards = this.d.live.knownShards();
    const pages = await Promise.all(shards.map((shard) => this.audit<{ auctions: Record<string, number>[] }>(shard, request)));
    const descending = sort === 'newest';
    const merged = pages.flatMap((p) => p.auctions).sort((a, b) => {
      const byValue = a[column] - b[column] || a.id - b.id;
      return descending ? -byValue : byValue;
    });
    const page = merged.slice(0, limit);
    const last = page[page.length - 1];
    return { auctions: page, next: merged.length > limit && last ? encodeCursor(last[column], last.id) : null };
  }

  private async audit<T>(shard: number, request: Record<string, unknown>): Promise<T> {
    let reply: { error?: { code: string; message: string } } & T;
    try {
      const msg = await this.d.nc.request(auditSubject(shard), encode(request), { timeout: AUDIT_TIMEOUT_MS });
      reply = decode(msg.data) as typeof reply;
    } catch (error) {
      throw new ApiError('unavailable', `the read model of shard ${shard} did not answer`, { cause: error });
    }
    // The read model's own checks (a bad cursor, status or limit) are the client's to fix; anything
    // else is an internal failure whose text (SQLite's) is for the log only.
    if (reply.error?.code === 'invalid_request') throw new ApiError('invalid_request', reply.error.message);
    if (reply.error) throw new Error(`read model of shard ${shard}: ${reply.error.code}: ${reply.error.message}`);
    return reply;
  }

  // --- SSE ---------------------------------------------------------------------------

  private openSse(ex: Exchange, req: HttpRequest): void {
    let auctionId: number;
    let resumeFrom: number;
    try {
      auctionId = v.idParam(req.getParameter(0), 'auction id');
      resumeFrom = resumeVersion(req.getHeader('last-event-id') || new URLSearchParams(req.getQuery() ?? '').get('lastEventId') || '');
      this.limitReads(ex.address, 1);
      this.limits.openStream(ex.address);
    } catch (error) {
      this.refuse(ex, asApiError(error));
      return;
    }
    // The stream counts against its address from now until the client goes away or is refused.
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.limits.closeStream(ex.address);
    };
    ex.whenAborted(release);
    const stream: SseStream = { ex, lastVersion: resumeFrom, congested: false };
    this.d.live.watch(auctionId).then((state) => {
      if (!state) {
        release();
        ex.error(new ApiError('not_found', `no auction ${auctionId}`));
        return;
      }
      if (ex.aborted) {
        this.d.live.unwatch(auctionId);
        return;
      }
      let streams = this.sse.get(auctionId);
      if (!streams) this.sse.set(auctionId, (streams = new Set()));
      streams.add(stream);
      this.d.metrics.sseStreams.inc();
      this.d.metrics.subscriptions.set(++this.subscriptionCount);
      ex.whenAborted(() => {
        streams.delete(stream);
        if (streams.size === 0) this.sse.delete(auctionId);
        this.d.live.unwatch(auctionId);
        this.d.metrics.sseStreams.dec();
        this.d.metrics.subscriptions.set(--this.subscriptionCount);
      });
      ex.done = true;
      ex.res.cork(() => {
        ex.writeHead(200, { 'Content-Type': 'text/event-stream', 'X-Accel-Buffering': 'no' });
        ex.res.write('retry: 1000\n\n');
      });
      // Resuming with the latest version already seen: nothing to send until it changes.
      this.writeSse(stream, this.d.live.current(auctionId) ?? state);
    }, (error: unknown) => {
      release();
      ex.error(asApiError(error));
    });
  }

  /** Writes a state if newer than the last one written; a congested stream gets only the latest once it drains. */
  private writeSse(stream: SseStream, state: LiveState): void {
    if (stream.ex.aborted || state.version <= stream.lastVersion) return;
    if (stream.congested) {
      this.d.metrics.backpressureDrops.inc();
      return;
    }
    stream.lastVersion = state.version;
    const res = stream.ex.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(`id: ${state.version}\nevent: state\ndata: ${JSON.stringify({ type: 'auction.state', ...state })}\n\n`);
    });
    if (!ok) {
      stream.congested = true;
      res.onWritable(() => {
        stream.congested = false;
        const latest = this.d.live.current(state.auctionId);
        if (latest) this.writeSse(stream, latest);
        return true;
      });
    }
  }

  private heartbeatSse(): void {
    for (const streams of this.sse.values()) {
      for (const s of streams) if (!s.ex.aborted && !s.congested) s.ex.res.cork(() => s.ex.res.write(': keep-alive\n\n'));
    }
  }

  /** An operator disabled this user: end their connections (their tokens are refused from now on). */
  endUserSessions(userId: number): void {
    // Called from the disabled-users watch, outside any uWS callback: corked.
    for (const ws of [...this.sockets]) if (ws.getUserData().userId === userId) ws.cork(() => ws.end(1008, 'user disabled'));
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  get subscriptions(): number {
    return this.subscriptionCount;
  }

  // --- WebSocket ---------------------------------------------------------------------

  private upgrade(res: HttpResponse, req: HttpRequest, context: uWS.us_socket_context_t): void {
    const query = new URLSearchParams(req.getQuery() ?? '');
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const token = query.get('token');
    const ex = new Exchange(res);
    if (this.refuseFraming(ex, req)) return;
    let userId = 0;
    try {
      if (token !== null) userId = this.d.tokens.verify(token);
      this.limits.openWebSocket(ex.address);
    } catch (error) {
      this.refuse(ex, asApiError(error));
      return;
    }
    try {
      if (userId) this.limits.signIn(userId);
    } catch (error) {
      this.limits.closeWebSocket(ex.address);
      this.refuse(ex, asApiError(error));
      return;
    }
    const connection: Connection = {
      userId, address: ex.address, backlog: null, subs: new Map(), joining: 0, format: query.get('format') === 'msgpack' ? 'b' : 't',
      bucket: new TokenBucket(this.d.config.connectionMessagesPerSec, this.d.config.connectionMessagesPerSec * 2, Date.now()), closed: false, behind: false,
    };
    // A socket uWS upgraded is opened (onOpen) right after this handler returns, and onClose then
    // releases what was counted above. An upgrade that throws (the client left) never opens: it is
    // released here, and nothing is rethrown into uWS.
    try {
      res.upgrade(connection, key, protocol, extensions, context);
    } catch (error) {
      this.d.logger.warn({ err: error }, 'WebSocket upgrade failed');
      if (userId) this.limits.signOut(userId);
      this.limits.closeWebSocket(ex.address);
    }
  }

  private onOpen(ws: WebSocket<Connection>): void {
    this.sockets.add(ws);
    this.d.metrics.connections.inc();
    const c = ws.getUserData();
    if (c.userId) void this.joinUser(ws, c.userId, c.format);
  }

  private onClose(ws: WebSocket<Connection>): void {
    const c = ws.getUserData();
    c.closed = true;
    this.limits.closeWebSocket(c.address);
    if (c.userId) this.limits.signOut(c.userId);
    this.sockets.delete(ws);
    this.d.metrics.connections.dec();
    for (const auctionId of c.subs.keys()) this.d.live.unwatch(auctionId);
    this.subscriptionCount -= c.subs.size;
    this.d.metrics.subscriptions.set(this.subscriptionCount);
    c.subs.clear();
  }

  /**
   * Sends from anywhere (corked); a message refused by backpressure marks the
   * socket behind. Answers often come after an await, when the client may be
   * gone: uWS throws on any use of a closed socket, so membership in
   * `sockets` (left in onClose) is checked first, without touching it.
   */
  private sendTo(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): void {
    if (!this.sockets.has(ws)) return;
    const c = ws.getUserData();
    let status = 0;
    ws.cork(() => {
      status = format === 'b' ? ws.send(clientPackr.pack(message), true) : ws.send(JSON.stringify(message), false);
    });
    if (status === 2) {
      c.behind = true;
      this.d.metrics.backpressureDrops.inc();
    }
  }

  private onDrain(ws: WebSocket<Connection>): void {
    const c = ws.getUserData();
    const buffered = ws.getBufferedAmount();
    if (buffered > this.d.config.backpressureBytesMax / 2) {
      c.behind = true; // broadcasts may have been dropped while it was this full
      return;
    }
    if (buffered > 0 || !c.behind) return;
    // Drained: resend the latest state of everything it watches (versions make repeats harmless).
    c.behind = false;
    this.d.metrics.backpressureDrops.inc();
    for (const [auctionId, format] of c.subs) {
      const state = this.d.live.current(auctionId);
      if (state) this.sendTo(ws, format, { type: 'auction.state', ...state });
    }
  }

  private onMessage(ws: WebSocket<Connection>, data: ArrayBuffer, isBinary: boolean): void {
    const c = ws.getUserData();
    const format: Format = isBinary ? 'b' : 't';
    if (!c.bucket.take(Date.now())) {
      this.d.metrics.rateLimited.inc({ scope: 'connection' });
      if (c.bucket.flooding()) {
        ws.end(1008, 'flooding');
        return;
      }
      this.sendTo(ws, format, { type: 'error', code: 'rate_limited', message: 'too many messages on this connection' });
      return;
    }
    let message: v.Fields;
    try {
      const raw = isBinary ? clientUnpackr.unpack(new Uint8Array(data)) : JSON.parse(Buffer.from(data).toString('utf8'));
      message = v.object(raw, 'a message');
    } catch (error) {
      this.sendError(ws, format, undefined, error instanceof ApiError ? error : new ApiError('invalid_request', isBinary ? 'the frame is not valid msgpack' : 'the frame is not valid JSON'));
      return;
    }
    const rid = message.rid;
    if (rid !== undefined && !(typeof rid === 'number' && Number.isFinite(rid)) && !(typeof rid === 'string' && rid.length <= RID_CHARS_MAX)) {
      this.sendError(ws, format, undefined, new ApiError('invalid_request', `rid must be a number or a string of at most ${RID_CHARS_MAX} characters`));
      return;
    }
    this.handle(ws, format, message, rid as string | number | undefined).catch((error: unknown) => {
      const apiError = asApiError(error);
      if (apiError.code !== 'internal') {
        this.sendError(ws, format, rid as string | number | undefined, apiError);
        return;
      }
      // The client learns only that it happened, and the id of the log line that says what.
      const requestId = nextRequestId();
      this.d.logger.error({ err: error, requestId }, 'unexpected error');
      this.sendError(ws, format, rid as string | number | undefined, new ApiError('internal', `${apiError.message} (request id ${requestId})`), { requestId });
    });
  }

  private sendError(ws: WebSocket<Connection>, format: Format, rid: string | number | undefined, error: ApiError, extra: Record<string, unknown> = {}): void {
    this.d.metrics.errors.inc({ code: error.code });
    this.sendTo(ws, format, { type: 'error', ...(rid === undefined ? {} : { rid }), code: error.code, message: error.message, ...extra });
  }

  private async handle(ws: WebSocket<Connection>, format: Format, m: v.Fields, rid: string | number | undefined): Promise<void> {
    const c = ws.getUserData();
    const ok = (extra: Record<string, unknown> = {}) => {
      if (rid !== undefined) this.sendTo(ws, format, { type: 'ok', rid, ...extra });
    };
    switch (m.type) {
      case 'auth': {
        const userId = this.d.tokens.verify(m.token);
        if (c.userId && c.userId !== userId) throw new ApiError('forbidden', 'this connection is signed in as another user');
        if (!c.userId || c.format !== format) {
          if (!c.userId) this.limits.signIn(userId);
          c.userId = userId;
          c.format = format;
          this.joinUser(ws, userId, format);
        }
        await c.backlog; // also when a `?token=` sign-in is still sending it
        // Answered after the unacknowledged notifications were sent again: `ok` means "you have them all".
        ok({ userId });
        return;
      }
      case 'subscribe': {
        const ids = v.idList(m, 'auctionIds', SUBSCRIBE_IDS_MAX);
        const fresh = [...new Set(ids)].filter((id) => !c.subs.has(id));
        if (c.subs.size + c.joining + fresh.length > this.d.config.subscriptionsPerConnectionMax) {
          throw new ApiError('invalid_request', `a connection subscribes to at most ${this.d.config.subscriptionsPerConnectionMax} auctions`);
        }
        // An auction nobody here watches yet costs an engine and a read-model request: charged to the address.
        const costly = fresh.filter((id) => !this.d.live.watching(id) && !this.d.live.knownMissing(id)).length;
        this.limitReads(c.address, costly);
        // Already subscribed ones get their current state again (a cheap resync for the client).
        for (const id of ids) if (c.subs.has(id)) this.sendState(ws, c.subs.get(id)!, id);
        c.joining += fresh.length;
        await Promise.all(fresh.map((id) => this.subscribe(ws, format, id, rid)));
        c.joining -= fresh.length;
        ok();
        return;
      }
      case 'unsubscribe': {
        const ids = v.idList(m, 'auctionIds', SUBSCRIBE_IDS_MAX);
        for (const id of ids) {
          const f = c.subs.get(id);
          if (f === undefined) continue;
          c.subs.delete(id);
          ws.unsubscribe(`a/${id}/${f}`);
          this.d.live.unwatch(id);
          this.d.metrics.subscriptions.set(--this.subscriptionCount);
        }
        ok();
        return;
      }
      case 'bid': {
        if (!c.userId) throw new ApiError('unauthenticated', 'send {type:"auth", token} first');
        const result = await this.bid(c.userId, m);
        this.sendTo(ws, format, { type: 'bid.result', ...(rid === undefined ? {} : { rid }), ...result });
        return;
      }
      case 'notifications.ack': {
        if (!c.userId) throw new ApiError('unauthenticated', 'send {type:"auth", token} first');
        await this.d.notifications.acknowledge(c.userId, v.id(m, 'upTo'));
        ok();
        return;
      }
      case 'ping':
        this.sendTo(ws, format, { type: 'pong', ...(rid === undefined ? {} : { rid }) });
        return;
      default:
        throw new ApiError('invalid_request', `unknown message type: ${String(m.type).slice(0, 40)}`);
    }
  }

  private async subscribe(ws: WebSocket<Connection>, format: Format, auctionId: number, rid: string | number | undefined): Promise<void> {
    const c = ws.getUserData();
    let state: LiveState | null;
    try {
      state = await this.d.live.watch(auctionId);
    } catch (error) {
      this.sendError(ws, format, rid, asApiError(error), { auctionId });
      return;
    }
    if (!state) {
      this.sendError(ws, format, rid, new ApiError('not_found', `no auction ${auctionId}`), { auctionId });
      return;
    }
    if (c.closed || c.subs.has(auctionId)) {
      this.d.live.unwatch(auctionId);
      return;
    }
    // Topic first, then the current state, in one synchronous step: no update can fall in between.
    c.subs.set(auctionId, format);
    ws.subscribe(`a/${auctionId}/${format}`);
    this.d.metrics.subscriptions.set(++this.subscriptionCount);
    this.sendState(ws, format, auctionId);
  }

  private sendState(ws: WebSocket<Connection>, format: Format, auctionId: number): void {
    const state = this.d.live.current(auctionId);
    if (state) this.sendTo(ws, format, { type: 'auction.state', ...state });
  }

  /**
   * Signs a connection in: live notifications from now on, in `format`, then
   * (the first time on this connection only) every unacknowledged one again.
   * Switching format later only moves the live ones: resending the whole
   * backlog for every `auth` would let a client multiply its reads at will.
   */
  private joinUser(ws: WebSocket<Connection>, userId: number, format: Format): Promise<void> {
    const c = ws.getUserData();
    if (c.closed) return Promise.resolve();
    ws.unsubscribe(`u/${userId}/${format === 'b' ? 't' : 'b'}`);
    ws.subscribe(`u/${userId}/${format}`);
    c.backlog ??= this.sendBacklog(ws, c, userId);
    return c.backlog;
  }

  /** Every unacknowledged notification, page by page, in the connection's format of the moment. Never rejects. */
  private async sendBacklog(ws: WebSocket<Connection>, c: Connection, userId: number): Promise<void> {
    try {
      for (let after = 0; ;) {
        const pending = await this.d.notifications.unacknowledged(userId, after);
        for (const n of pending) this.sendTo(ws, c.format, { type: 'notification', ...n });
        if (pending.length === 0 || c.closed) break;
        after = pending[pending.length - 1].id;
      }
    } catch (error) {
      this.sendError(ws, c.format, undefined, asApiError(error));
    }
  }
}
