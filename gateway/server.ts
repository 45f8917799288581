import uWS, { type TemplatedApp, type us_listen_socket } from 'uWebSockets.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { EngineClient } from '../protocol/index.js';
import type { LiveState, Notification } from '../protocol/public.js';
import type { Tokens, UserStore } from './auth.js';
import { Commands } from './commands.js';
import type { GatewayConfig } from './config.js';
import { SubscriptionCount } from './fanout/counts.js';
import { Fanout } from './fanout/fanout.js';
import { Guards } from './guards.js';
import { mountFallbacks, mountRoutes } from './http/mount.js';
import type { LiveFeed } from './live/feed.js';
import type { Metrics } from './metrics.js';
import type { NotificationCenter } from './notifications.js';
import { AuditClient } from './read-model/audit-client.js';
import { AuctionReads } from './read-model/auctions.js';
import { EngineStates } from './read-model/engine-states.js';
import type { CommandRouter } from './router.js';
import type { LoopSaturation } from './saturation.js';
import { SseStreams } from './sse/streams.js';
import type { Connection } from './ws/connection.js';
import { WsSessions } from './ws/session.js';

const SWEEP_MS = 10_000;

export type GatewayDeps = {
  config: GatewayConfig;
  logger: Logger;
  nc: NatsConnection;
  engines: EngineClient;
  router: CommandRouter;
  live: LiveFeed;
  notifications: NotificationCenter;
  tokens: Tokens;
  users: UserStore;
  metrics: Metrics;
  saturation: LoopSaturation;
};

/**
 * The public API v1 on uWebSockets.js, assembled from its parts: the HTTP
 * route table (http/), the WebSocket (ws/), SSE (sse/), the fan-out of live
 * states and notifications (fanout/) and the reads of the read model
 * (read-model/), over the guards and commands they share. Stateless: every
 * durable thing lives in NATS (engines, streams, KV), so any number of
 * gateways can serve behind a load balancer. See docs/gateway.md.
 */
export class GatewayServer {
  readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private readonly subscriptionCount: SubscriptionCount;
  private readonly ws: WsSessions;
  private readonly sse: SseStreams;
  private readonly fanout: Fanout;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly d: GatewayDeps) {
    const { config, logger, nc, live, metrics, tokens, notifications } = d;
    const guards = new Guards(config, metrics);
    const engineStates = new EngineStates(d.engines);
    const commands = new Commands({
      router: d.router,
      live,
      engineStates,
      guards,
      metrics,
      saturation: d.saturation,
    });
    const reads = new AuctionReads({ live, audit: new AuditClient(nc), engineStates });
    this.subscriptionCount = new SubscriptionCount(metrics);
    const subscriptions = this.subscriptionCount;
    this.sse = new SseStreams({ guards, live, metrics, subscriptions });
    this.ws = new WsSessions({ config, logger, tokens, guards, live, commands, notifications, metrics, subscriptions });
    this.app = uWS.App();
    this.fanout = new Fanout(this.app, this.sse, metrics);
    mountRoutes(this.app, {
      config,
      logger,
      nc,
      tokens,
      users: d.users,
      guards,
      commands,
      reads,
      live,
      notifications,
      sse: this.sse,
      metrics,
      connections: () => this.ws.count,
    });
    this.app.ws<Connection>('/v1/ws', this.ws.behavior());
    mountFallbacks(this.app, guards);
    this.sweepTimer = setInterval(() => {
      guards.sweep();
      metrics.watchedAuctions.set(live.watched);
    }, SWEEP_MS);
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
    clearInterval(this.sweepTimer);
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    this.ws.close();
    this.sse.close();
  }

  /** New states of watched auctions (LiveFeed), once per turn of the event loop. */
  publishStates(states: LiveState[]): void {
    this.fanout.publishStates(states);
  }

  /** A new notification (NotificationCenter), to the user's connections here. */
  deliverNotification(userId: number, notification: Notification): void {
    this.fanout.deliverNotification(userId, notification);
  }

  /** An operator disabled this user: end their connections (their tokens are refused from now on). */
  endUserSessions(userId: number): void {
    this.ws.endUserSessions(userId);
  }

  get connectionCount(): number {
    return this.ws.count;
  }

  get subscriptions(): number {
    return this.subscriptionCount.value;
  }
}
