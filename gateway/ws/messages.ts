import type { WebSocket } from 'uWebSockets.js';
import type { LiveState } from '../../protocol/public.js';
import { ApiError, asApiError } from '../errors.js';
import { auctionTopic, otherFormat, userTopic, type Format } from '../fanout/topics.js';
import { bidResultFrame, notificationFrame, okFrame, pongFrame, stateFrame, type Rid } from '../public-shapes.js';
import * as v from '../validate.js';
import { SUBSCRIBE_IDS_MAX } from './config.js';
import type { Connection, FrameSender, WsDeps } from './connection.js';

/**
 * The client -> server messages of `/v1/ws` (docs/gateway.md): `auth`,
 * `subscribe`, `unsubscribe`, `bid`, `notifications.ack` and `ping`. What a
 * handler throws is answered as an `error` by the session.
 */
export class WsMessages {
  constructor(
    private readonly d: WsDeps,
    private readonly out: FrameSender,
  ) {}

  async handle(ws: WebSocket<Connection>, format: Format, m: v.Fields, rid: Rid): Promise<void> {
    const c = ws.getUserData();
    switch (m.type) {
      case 'auth': {
        const userId = this.d.tokens.verify(m.token);
        if (c.userId && c.userId !== userId)
          throw new ApiError('forbidden', 'this connection is signed in as another user');
        if (!c.userId || c.format !== format) {
          if (!c.userId) this.d.guards.connections.signIn(userId);
          c.userId = userId;
          c.format = format;
          void this.joinUser(ws, userId, format);
        }
        await c.backlog; // also when a `?token=` sign-in is still sending it
        // Answered after the unacknowledged notifications were sent again: `ok` means "you have them all".
        this.ok(ws, format, rid, { userId });
        return;
      }
      case 'subscribe': {
        const ids = v.idList(m, 'auctionIds', SUBSCRIBE_IDS_MAX);
        const fresh = [...new Set(ids)].filter((id) => !c.subs.has(id));
        const subscriptionsMax = this.d.config.subscriptionsPerConnectionMax;
        if (c.subs.size + c.joining + fresh.length > subscriptionsMax) {
          throw new ApiError('invalid_request', `a connection subscribes to at most ${subscriptionsMax} auctions`);
        }
        // An auction nobody here watches yet costs an engine and a read-model request: charged to the address.
        const costly = fresh.filter((id) => !this.d.live.watching(id) && !this.d.live.knownMissing(id)).length;
        this.d.guards.limitReads(c.address, costly);
        // Already subscribed ones get their current state again (a cheap resync for the client).
        for (const id of ids) if (c.subs.has(id)) this.sendState(ws, c.subs.get(id)!, id);
        c.joining += fresh.length;
        await Promise.all(fresh.map((id) => this.subscribe(ws, format, id, rid)));
        c.joining -= fresh.length;
        this.ok(ws, format, rid);
        return;
      }
      case 'unsubscribe': {
        const ids = v.idList(m, 'auctionIds', SUBSCRIBE_IDS_MAX);
        for (const id of ids) {
          const f = c.subs.get(id);
          if (f === undefined) continue;
          c.subs.delete(id);
          ws.unsubscribe(auctionTopic(id, f));
          this.d.live.unwatch(id);
          this.d.subscriptions.removed();
        }
        this.ok(ws, format, rid);
        return;
      }
      case 'bid': {
        if (!c.userId) throw new ApiError('unauthenticated', 'send {type:"auth", token} first');
        const result = await this.d.commands.bid(c.userId, m);
        this.out.sendSoon(ws, format, bidResultFrame(rid, result));
        return;
      }
      case 'notifications.ack': {
        if (!c.userId) throw new ApiError('unauthenticated', 'send {type:"auth", token} first');
        await this.d.notifications.acknowledge(c.userId, v.id(m, 'upTo'));
        this.ok(ws, format, rid);
        return;
      }
      case 'ping':
        this.out.sendTo(ws, format, pongFrame(rid));
        return;
      default:
        throw new ApiError('invalid_request', `unknown message type: ${String(m.type).slice(0, 40)}`);
    }
  }

  /**
   * Signs a connection in: live notifications from now on, in `format`, then
   * (the first time on this connection only) every unacknowledged one again.
   * Switching format later only moves the live ones: resending the whole
   * backlog for every `auth` would let a client multiply its reads at will.
   */
  joinUser(ws: WebSocket<Connection>, userId: number, format: Format): Promise<void> {
    const c = ws.getUserData();
    if (c.closed) return Promise.resolve();
    ws.unsubscribe(userTopic(userId, otherFormat(format)));
    ws.subscribe(userTopic(userId, format));
    c.backlog ??= this.sendBacklog(ws, c, userId);
    return c.backlog;
  }

  /** Answers a message that carried a rid, once done. */
  private ok(ws: WebSocket<Connection>, format: Format, rid: Rid, extra?: Record<string, unknown>): void {
    if (rid !== undefined) this.out.sendTo(ws, format, okFrame(rid, extra));
  }

  private async subscribe(ws: WebSocket<Connection>, format: Format, auctionId: number, rid: Rid): Promise<void> {
    const c = ws.getUserData();
    let state: LiveState | null;
    try {
      state = await this.d.live.watch(auctionId);
    } catch (error) {
      this.out.sendError(ws, format, rid, asApiError(error), { auctionId });
      return;
    }
    if (!state) {
      this.out.sendError(ws, format, rid, new ApiError('not_found', `no auction ${auctionId}`), { auctionId });
      return;
    }
    if (c.closed || c.subs.has(auctionId)) {
      this.d.live.unwatch(auctionId);
      return;
    }
    // Topic first, then the current state, in one synchronous step: no update can fall in between.
    c.subs.set(auctionId, format);
    ws.subscribe(auctionTopic(auctionId, format));
    this.d.subscriptions.added();
    this.sendState(ws, format, auctionId);
  }

  private sendState(ws: WebSocket<Connection>, format: Format, auctionId: number): void {
    const state = this.d.live.current(auctionId);
    if (state) this.out.sendTo(ws, format, stateFrame(state));
  }

  /** Every unacknowledged notification, page by page, in the connection's format of the moment. Never rejects. */
  private async sendBacklog(ws: WebSocket<Connection>, c: Connection, userId: number): Promise<void> {
    try {
      for (let after = 0; ;) {
        const pending = await this.d.notifications.unacknowledged(userId, after);
        for (const n of pending) this.out.sendTo(ws, c.format, notificationFrame(n));
        if (pending.length === 0 || c.closed) break;
        after = pending[pending.length - 1].id;
      }
    } catch (error) {
      this.out.sendError(ws, c.format, undefined, asApiError(error));
    }
  }
}
