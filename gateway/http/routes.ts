import type { HttpRequest } from 'uWebSockets.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { SearchRequest } from '../../protocol/operations.js';
import type { Tokens, UserStore } from '../auth.js';
import { PASSWORD_LIMITS, USERNAME_PATTERN } from '../auth.js';
import type { Commands } from '../commands.js';
import type { GatewayConfig } from '../config.js';
import { ApiError } from '../errors.js';
import type { Guards } from '../guards.js';
import type { LiveFeed } from '../live/feed.js';
import type { Metrics } from '../metrics.js';
import type { NotificationCenter } from '../notifications.js';
import { SORT_FIELDS, type AuctionReads } from '../read-model/auctions.js';
import type { SseStreams } from '../sse/streams.js';
import * as v from '../validate.js';
import { queryOf, type Exchange } from './exchange.js';

/** What the route handlers work with. */
export type HttpContext = {
  config: GatewayConfig;
  logger: Logger;
  nc: NatsConnection;
  tokens: Tokens;
  users: UserStore;
  guards: Guards;
  commands: Commands;
  reads: AuctionReads;
  live: LiveFeed;
  notifications: NotificationCenter;
  sse: SseStreams;
  metrics: Metrics;
  /** Open WebSockets (for `/healthz`). */
  connections: () => number;
};

/**
 * `none`: public. `user`: a valid bearer token is required, checked before
 * the handler runs (`call.userId`). `optional`: public, a token only adds
 * the viewer's own data; the handler checks it, after its parameters.
 */
export type Auth = 'none' | 'user' | 'optional';

/** One request as a handler sees it. Read `req` before the first await: uWS invalidates it then. */
export type HttpCall = {
  ex: Exchange;
  req: HttpRequest;
  /** The bearer token ('' when absent or the route is `none`). */
  token: string;
  /** The signed-in user of a `user` route (0 otherwise). */
  userId: number;
  /** The query string, on routes with `query` (parsed before the token is checked). */
  query?: URLSearchParams;
  /** The JSON body, on routes with `body` (read from the start, as uWS requires). */
  body?: Promise<unknown>;
};

type RouteBase = { method: 'get' | 'post'; path: string; auth: Auth };
export type HandlerRoute = RouteBase & {
  query?: true;
  body?: true;
  /** What a GET costs of the address's read budget (default 1). */
  readCost?: (ctx: HttpContext) => number;
  handler: (ctx: HttpContext, call: HttpCall) => Promise<void>;
};
/** A long-lived answer (SSE), which answers its own errors. */
export type StreamRoute = RouteBase & { stream: (ctx: HttpContext, ex: Exchange, req: HttpRequest) => void };
export type HttpRoute = HandlerRoute | StreamRoute;

/** Reads cost one token of the address's budget; these cost more (a Prometheus render is not cheap). */
const METRICS_READ_COST = 10;

/**
 * Every HTTP route of the public API. The table is the route list: the
 * gateway serves it (http/mount.ts), answers 405 on its paths with another
 * method and 404 elsewhere, and test/docs.test.ts checks docs/openapi.yaml
 * against it. The WebSocket `/v1/ws` is served by ws/.
 */
export const HTTP_ROUTES: readonly HttpRoute[] = [
  { method: 'post', path: '/v1/users', auth: 'none', body: true, handler: register },
  { method: 'post', path: '/v1/sessions', auth: 'none', body: true, handler: signIn },
  { method: 'post', path: '/v1/auctions', auth: 'user', body: true, handler: createAuction },
  // A search asks every shard's read model: it costs as many reads.
  {
    method: 'get',
    path: '/v1/auctions',
    auth: 'none',
    query: true,
    readCost: (ctx) => Math.max(1, ctx.live.knownShards().length),
    handler: search,
  },
  { method: 'get', path: '/v1/auctions/:id', auth: 'none', handler: auctionDetails },
  { method: 'post', path: '/v1/auctions/:id/bids', auth: 'user', body: true, handler: bid },
  { method: 'get', path: '/v1/auctions/:id/bids', auth: 'optional', handler: bidHistory },
  { method: 'get', path: '/v1/auctions/:id/events', auth: 'none', stream: (ctx, ex, req) => ctx.sse.open(ex, req) },
  { method: 'get', path: '/v1/me/notifications', auth: 'user', query: true, handler: listNotifications },
  { method: 'post', path: '/v1/me/notifications/ack', auth: 'user', body: true, handler: acknowledgeNotifications },
  // Liveness probes are local and cheap: not charged, so a busy address cannot make a gateway look dead.
  { method: 'get', path: '/healthz', auth: 'none', readCost: () => 0, handler: health },
  { method: 'get', path: '/metrics', auth: 'none', readCost: () => METRICS_READ_COST, handler: metrics },
];

async function register(ctx: HttpContext, { ex, body }: HttpCall): Promise<void> {
  ctx.guards.limitAddress(ex.address);
  const fields = v.object(await body);
  const username = v.string(fields, 'username', { min: 3, max: 32, pattern: USERNAME_PATTERN });
  const password = v.string(fields, 'password', PASSWORD_LIMITS);
  ex.json(201, await ctx.guards.hashingFor(ex.address, () => ctx.users.register(username, password)));
}

async function signIn(ctx: HttpContext, { ex, body }: HttpCall): Promise<void> {
  ctx.guards.limitAddress(ex.address);
  const fields = v.object(await body);
  const username = v.string(fields, 'username', { min: 1, max: 32 });
  const password = v.string(fields, 'password', { min: 1, max: PASSWORD_LIMITS.max });
  const userId = ctx.tokens.checkEnabled(
    await ctx.guards.hashingFor(ex.address, () => ctx.users.authenticate(username, password)),
  );
  ex.json(200, { ...ctx.tokens.mint(userId), userId });
}

async function createAuction(ctx: HttpContext, { ex, body, userId }: HttpCall): Promise<void> {
  const fields = v.object(await body);
  ctx.guards.limitUser(userId);
  ex.json(201, await ctx.commands.createAuction(userId, fields));
}

async function search(ctx: HttpContext, { ex, query }: HttpCall): Promise<void> {
  ex.json(200, await ctx.reads.search(searchRequest(query!)));
}

/** The search of a query string (`?q=&status=&sellerId=&sort=&limit=&cursor=`). */
function searchRequest(query: URLSearchParams): SearchRequest & { limit: number } {
  const sort = query.get('sort') ?? 'ending_soon';
  if (!Object.hasOwn(SORT_FIELDS, sort))
    throw new ApiError('invalid_request', 'sort must be ending_soon, newest or price');
  const limit = v.optionalCountParam(query.get('limit') ?? '', 'limit', 100) ?? 20;
  if (limit === 0) throw new ApiError('invalid_request', 'limit must be 1 to 100');
  const sellerParam = query.get('sellerId');
  return {
    op: 'search',
    sort: sort as SearchRequest['sort'],
    limit,
    q: query.get('q') ?? undefined,
    status: query.get('status') ?? undefined,
    sellerId: sellerParam === null ? undefined : v.idParam(sellerParam, 'sellerId'),
    cursor: query.get('cursor') ?? undefined,
  };
}

async function auctionDetails(ctx: HttpContext, { ex, req }: HttpCall): Promise<void> {
  const auctionId = v.idParam(req.getParameter(0), 'auction id');
  const auction = await ctx.reads.details(auctionId);
  if (!auction) throw new ApiError('not_found', `no auction ${auctionId}`);
  ex.json(200, auction);
}

async function bid(ctx: HttpContext, { ex, req, body, userId }: HttpCall): Promise<void> {
  const auctionId = v.idParam(req.getParameter(0), 'auction id');
  const result = await ctx.commands.bid(userId, { ...v.object(await body), auctionId });
  // A shed bid is a 200 like any rejection, plus Retry-After (whole seconds, rounded up; API.md "Load shedding").
  const headers: Record<string, string> =
    result.retryAfterMs === undefined ? {} : { 'Retry-After': String(Math.ceil(result.retryAfterMs / 1_000)) };
  ex.json(200, result, headers);
}

async function bidHistory(ctx: HttpContext, { ex, req, token }: HttpCall): Promise<void> {
  const auctionId = v.idParam(req.getParameter(0), 'auction id');
  const query = queryOf(req);
  // History is public; a valid token only adds the viewer's own maxima.
  const viewerId = token ? ctx.tokens.verify(token) : 0;
  const after = v.optionalCountParam(query.get('after') ?? '', 'after');
  const limit = v.optionalCountParam(query.get('limit') ?? '', 'limit', 100);
  if (limit === 0) throw new ApiError('invalid_request', 'limit must be 1 to 100');
  ex.json(200, await ctx.reads.bids(auctionId, { after, limit, viewerId }));
}

async function listNotifications(ctx: HttpContext, { ex, query, userId }: HttpCall): Promise<void> {
  const after = v.optionalCountParam(query!.get('after') ?? '', 'after') ?? 0;
  ex.json(200, { notifications: await ctx.notifications.unacknowledged(userId, after) });
}

async function acknowledgeNotifications(ctx: HttpContext, { ex, body, userId }: HttpCall): Promise<void> {
  const upTo = v.id(v.object(await body), 'upTo');
  await ctx.notifications.acknowledge(userId, upTo);
  ex.send(204, '', {});
}

function health(ctx: HttpContext, { ex }: HttpCall): Promise<void> {
  const nats = !ctx.nc.isClosed() && ctx.nc.info !== undefined;
  ex.json(nats ? 200 : 503, {
    status: nats ? 'ok' : 'degraded',
    nats,
    shards: ctx.live.positions(),
    connections: ctx.connections(),
  });
  return Promise.resolve();
}

async function metrics(ctx: HttpContext, { ex }: HttpCall): Promise<void> {
  ex.send(200, await ctx.metrics.registry.metrics(), { 'Content-Type': ctx.metrics.registry.contentType });
}
