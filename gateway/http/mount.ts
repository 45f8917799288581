import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { ApiError } from '../errors.js';
import type { Guards } from '../guards.js';
import { answer, bearer, Exchange, queryOf, readJson } from './exchange.js';
import { HTTP_ROUTES, type HandlerRoute, type HttpContext } from './routes.js';

/**
 * Serves the route table. Every request: framing checked, a GET charged to
 * its address's read budget, then what the route declares read in a fixed
 * order (token, query, body, the token checked), then the handler; all it
 * throws becomes the answer.
 */
export function mountRoutes(app: TemplatedApp, ctx: HttpContext): void {
  const unexpected: Unexpected = (error, requestId) => ctx.logger.error({ err: error, requestId }, 'unexpected error');
  for (const route of HTTP_ROUTES) {
    if ('stream' in route) {
      app[route.method](route.path, (res, req) => {
        const ex = new Exchange(res);
        if (!ctx.guards.refuseFraming(ex, req)) route.stream(ctx, ex, req);
      });
    } else {
      app[route.method](route.path, (res, req) => serve(ctx, route, res, req, unexpected));
    }
  }
}

/** Known paths with another method: 405; anything else: 404. Mounted after every other route. */
export function mountFallbacks(app: TemplatedApp, guards: Guards): void {
  for (const path of new Set(HTTP_ROUTES.map((r) => r.path))) {
    app.any(path, (res, req) => {
      const ex = new Exchange(res);
      if (!guards.refuseFraming(ex, req)) ex.error(new ApiError('method_not_allowed'));
    });
  }
  app.any('/*', (res, req) => {
    const ex = new Exchange(res);
    if (!guards.refuseFraming(ex, req)) ex.error(new ApiError('not_found'));
  });
}

type Unexpected = (error: unknown, requestId: string) => void;

function serve(
  ctx: HttpContext,
  route: HandlerRoute,
  res: HttpResponse,
  req: HttpRequest,
  unexpected: Unexpected,
): void {
  const ex = new Exchange(res);
  if (ctx.guards.refuseFraming(ex, req)) return;
  // The handler starts synchronously (uWS's `req` is valid only now); all it throws becomes the answer.
  answer(
    ex,
    async () => {
      if (route.method === 'get') ctx.guards.limitReads(ex.address, route.readCost ? route.readCost(ctx) : 1);
      const token = route.auth === 'none' ? '' : bearer(req);
      const query = route.query ? queryOf(req) : undefined;
      const body = route.body ? readJson(ex, req, ctx.config.bodyBytesMax) : undefined;
      const userId = route.auth === 'user' ? ctx.tokens.verify(token) : 0;
      await route.handler(ctx, { ex, req, token, userId, query, body });
    },
    unexpected,
  );
}
