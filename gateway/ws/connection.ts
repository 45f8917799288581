import type { WebSocket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import type { Tokens } from '../auth.js';
import type { Commands } from '../commands.js';
import type { GatewayConfig } from '../config.js';
import type { SubscriptionCount } from '../fanout/counts.js';
import type { Format } from '../fanout/topics.js';
import type { Guards } from '../guards.js';
import type { LiveFeed } from '../live/feed.js';
import type { Metrics } from '../metrics.js';
import type { NotificationCenter } from '../notifications.js';
import type { TokenBucket } from '../rate-limit.js';
import type { ApiError } from '../errors.js';
import type { Rid } from '../public-shapes.js';

/** What the gateway keeps per WebSocket connection. */
export type Connection = {
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

export type WsDeps = {
  config: GatewayConfig;
  logger: Logger;
  tokens: Tokens;
  guards: Guards;
  live: LiveFeed;
  commands: Commands;
  notifications: NotificationCenter;
  metrics: Metrics;
  subscriptions: SubscriptionCount;
};

/** How the message handlers answer on a connection (WsSessions). */
export interface FrameSender {
  sendTo(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): void;
  /** The same, written with the socket's other answers of this turn in one corked write. */
  sendSoon(ws: WebSocket<Connection>, format: Format, message: Record<string, unknown>): void;
  sendError(
    ws: WebSocket<Connection>,
    format: Format,
    rid: Rid,
    error: ApiError,
    extra?: Record<string, unknown>,
  ): void;
}
