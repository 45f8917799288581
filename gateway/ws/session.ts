import type { HttpRequest, HttpResponse, us_socket_context_t, WebSocket, WebSocketBehavior } from 'uWebSockets.js';
import { ApiError, asApiError } from '../errors.js';
import { clientPackr, clientUnpackr } from '../fanout/codec.js';
import type { Format } from '../fanout/topics.js';
import { Exchange, nextRequestId } from '../http/exchange.js';
import { errorFrame, stateFrame, type Rid } from '../public-shapes.js';
import { TokenBucket } from '../rate-limit.js';
import * as v from '../validate.js';
import { RID_CHARS_MAX, socketLimits } from './config.js';
import { WsMessages } from './messages.js';
import { TurnWrites } from './turn-writes.js';
import type { Connection, FrameSender, WsDeps } from './connection.js';

/**
 * The WebSocket `/v1/ws`: connections from upgrade to close, frames in (rate
 * limited per connection, parsed, answered by WsMessages) and out (in the
 * format spoken, with backpressure noted and caught up on drain).
 */
export class WsSessions implements FrameSender {
  private readonly sockets = new Set<WebSocket<Connection>>();
  private readonly messages: WsMessages;
  /** Answers waiting for the end of this turn (`sendSoon`). */
  private readonly answers = new TurnWrites<
    WebSocket<Connection>,
    { format: Format; message: Record<string, unknown> }
  >(
    (ws, frames) => {
      let refused = false;
      for (const { format, message } of frames) if (write(ws, format, message) === 2) refused = true;
      if (refused) this.markBehind(ws);
    },
    (ws) => this.sockets.has(ws),
  );

  constructor(private readonly d: WsDeps) {
    this.messages = new WsMessages(d, this);
  }

  behavior(): WebSocketBehavior<Connection> {
    return {
      ...socketLimits(this.d.config),
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.onOpen(ws),
      message: (ws, message, isBinary) => this.onMessage(ws, message, isBinary),
      drain: (ws) => this.onDrain(ws),
      close: (ws) => this.onClose(ws),
    };
  }

  get count(): number {
    return this.sockets.size;
  }

  /** An operator disabled this user: end their connections (their tokens are refused from now on). */
  endUserSessions(userId: number): void {
    // Called from the disabled-users watch, outside any uWS callback: corked.
    for (const ws of [...this.sockets])
      if (ws.getUserData().userId === userId) ws.cork(() => ws.end(1008, 'user disabled'));
  }

  close(): void {
    for (const ws of [...this.sockets]) ws.cork(() => ws.end(1001, 'gateway stopping'));
  }

  /**
   * Sends from anywhere (corked); a message refused by backpressure marks the
   * socket behind. Answers often come after an await, when the client may be
   * gone: uWS throws on any use of a closed socket, so membership in
   * `sockets` (left in onClose) is checked first, without touching it.
   */
  sendTo(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): void {
    if (!this.sockets.has(ws)) return;
    let status = 0;
    ws.cork(() => {
      status = write(ws, format, message);
    });
    if (status === 2) this.markBehind(ws);
  }

  /** The same, written with the socket's other answers of this turn in one corked write (TurnWrites). */
  sendSoon(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): void {
    this.answers.queue(ws, { format, message });
  }

  private markBehind(ws: WebSocket<Connection>): void {
    ws.getUserData().behind = true;
    this.d.metrics.backpressureDrops.inc();
  }

  sendError(
    ws: WebSocket<Connection>,
    format: Format,
    rid: Rid,
    error: ApiError,
    extra?: Record<string, unknown>,
  ): void {
    this.d.metrics.errors.inc({ code: error.code });
    this.sendTo(ws, format, errorFrame(rid, error.code, error.message, extra));
  }

  private upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const query = new URLSearchParams(req.getQuery() ?? '');
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const token = query.get('token');
    const ex = new Exchange(res);
    const { guards } = this.d;
    if (guards.refuseFraming(ex, req)) return;
    let userId = 0;
    try {
      if (token !== null) userId = this.d.tokens.verify(token);
      guards.connections.openWebSocket(ex.address);
    } catch (error) {
      guards.refuse(ex, asApiError(error));
      return;
    }
    try {
      if (userId) guards.connections.signIn(userId);
    } catch (error) {
      guards.connections.closeWebSocket(ex.address);
      guards.refuse(ex, asApiError(error));
      return;
    }
    const perSec = this.d.config.connectionMessagesPerSec;
    const connection: Connection = {
      userId,
      address: ex.address,
      backlog: null,
      subs: new Map(),
      joining: 0,
      format: query.get('format') === 'msgpack' ? 'b' : 't',
      bucket: new TokenBucket(perSec, perSec * 2, Date.now()),
      closed: false,
      behind: false,
    };
    // A socket uWS upgraded is opened (onOpen) right after this handler returns, and onClose then
    // releases what was counted above. An upgrade that throws (the client left) never opens: it is
    // released here, and nothing is rethrown into uWS.
    try {
      res.upgrade(connection, key, protocol, extensions, context);
    } catch (error) {
      this.d.logger.warn({ err: error }, 'WebSocket upgrade failed');
      if (userId) guards.connections.signOut(userId);
      guards.connections.closeWebSocket(ex.address);
    }
  }

  private onOpen(ws: WebSocket<Connection>): void {
    this.sockets.add(ws);
    this.d.metrics.connections.inc();
    const c = ws.getUserData();
    if (c.userId) void this.messages.joinUser(ws, c.userId, c.format);
  }

  private onClose(ws: WebSocket<Connection>): void {
    const c = ws.getUserData();
    c.closed = true;
    this.d.guards.connections.closeWebSocket(c.address);
    if (c.userId) this.d.guards.connections.signOut(c.userId);
    this.sockets.delete(ws);
    this.answers.forget(ws);
    this.d.metrics.connections.dec();
    for (const auctionId of c.subs.keys()) this.d.live.unwatch(auctionId);
    this.d.subscriptions.removed(c.subs.size);
    c.subs.clear();
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
      if (state) this.sendTo(ws, format, stateFrame(state));
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
      this.sendTo(ws, format, errorFrame(undefined, 'rate_limited', 'too many messages on this connection'));
      return;
    }
    let message: v.Fields;
    try {
      const raw: unknown = isBinary
        ? clientUnpackr.unpack(new Uint8Array(data))
        : JSON.parse(Buffer.from(data).toString('utf8'));
      message = v.object(raw, 'a message');
    } catch (error) {
      this.sendError(
        ws,
        format,
        undefined,
        error instanceof ApiError
          ? error
          : new ApiError(
              'invalid_request',
              isBinary ? 'the frame is not valid msgpack' : 'the frame is not valid JSON',
            ),
      );
      return;
    }
    const rid = message.rid;
    if (
      rid !== undefined &&
      !(typeof rid === 'number' && Number.isFinite(rid)) &&
      !(typeof rid === 'string' && rid.length <= RID_CHARS_MAX)
    ) {
      this.sendError(
        ws,
        format,
        undefined,
        new ApiError('invalid_request', `rid must be a number or a string of at most ${RID_CHARS_MAX} characters`),
      );
      return;
    }
    this.messages.handle(ws, format, message, rid).catch((error: unknown) => {
      const apiError = asApiError(error);
      if (apiError.code !== 'internal') {
        this.sendError(ws, format, rid, apiError);
        return;
      }
      // The client learns only that it happened, and the id of the log line that says what.
      const requestId = nextRequestId();
      this.d.logger.error({ err: error, requestId }, 'unexpected error');
      this.sendError(ws, format, rid, new ApiError('internal', `${apiError.message} (request id ${requestId})`), {
        requestId,
      });
    });
  }
}

/** One frame in the format the connection speaks; uWS's send status (2: dropped by backpressure). */
function write(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): number {
  return format === 'b' ? ws.send(clientPackr.pack(message), true) : ws.send(JSON.stringify(message), false);
}
