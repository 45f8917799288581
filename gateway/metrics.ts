import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RouterObserver } from './router.js';

/** The gateway's Prometheus metrics (`GET /metrics`). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  return {
    registry,
    bids: new Counter({
      name: 'gateway_bids_total',
      help: 'Bids answered, by outcome (accepted, or the rejection reason)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    commandSeconds: new Histogram({
      name: 'gateway_command_duration_seconds',
      help: "Time from a command reaching the gateway to the engine's answer",
      labelNames: ['type'] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    connections: new Gauge({
      name: 'gateway_websocket_connections',
      help: 'Open WebSocket connections',
      registers: [registry],
    }),
    sseStreams: new Gauge({ name: 'gateway_sse_streams', help: 'Open SSE streams', registers: [registry] }),
    subscriptions: new Gauge({
      name: 'gateway_subscriptions',
      help: 'Auction subscriptions held by WebSocket and SSE clients',
      registers: [registry],
    }),
    watchedAuctions: new Gauge({
      name: 'gateway_watched_auctions',
      help: 'Auctions whose live state this gateway keeps',
      registers: [registry],
    }),
    backpressureDrops: new Counter({
      name: 'gateway_backpressure_drops_total',
      help: 'Messages not written to a slow client (its latest states are resent once it drains)',
      registers: [registry],
    }),
    stateUpdates: new Counter({
      name: 'gateway_state_updates_total',
      help: 'Auction states published to subscribers (after conflation)',
      registers: [registry],
    }),
    notificationsPushed: new Counter({
      name: 'gateway_notifications_pushed_total',
      help: 'Notifications written to connected users',
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'gateway_rate_limited_total',
      help: 'Requests refused by a rate limit',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    unhandledRejections: new Counter({
      name: 'gateway_unhandled_rejections_total',
      help: 'Promise rejections nobody handled (bugs; logged, and the gateway keeps serving)',
      registers: [registry],
    }),
    shed: new Counter({
      name: 'gateway_bids_shed_total',
      help: "Bids answered overloaded by this gateway's admission budget (never sent to the engine), by shard",
      labelNames: ['shard'] as const,
      registers: [registry],
    }),
    shedSaturated: new Counter({
      name: 'gateway_bids_shed_saturated_total',
      help: 'Bids answered overloaded at the frame because this gateway itself ran late (gateway/saturation.ts)',
      registers: [registry],
    }),
    shedShare: new Gauge({
      name: 'gateway_saturation_shed_share',
      help: 'Share of new bids this gateway sheds at the frame because its event loop runs late (0 to 0.9)',
      registers: [registry],
    }),
    resent: new Counter({
      name: 'gateway_requests_resent_total',
      help: 'Command requests in flight sent again to a new primary when its fence was seen (takeovers), by shard',
      labelNames: ['shard'] as const,
      registers: [registry],
    }),
    queueSeconds: new Histogram({
      name: 'gateway_queue_seconds',
      help: 'Time commands waited for their shard, by shard and where: here (before the request left) or engine (its queue)',
      labelNames: ['shard', 'at'] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    admissionBudget: new Gauge({
      name: 'gateway_admission_budget',
      help: 'Commands a shard may have outstanding from this gateway before bids are shed (gateway/admission.ts)',
      labelNames: ['shard'] as const,
      registers: [registry],
    }),
    errors: new Counter({
      name: 'gateway_errors_total',
      help: 'Error answers, by code',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The router's load reports as metrics: shed bids, and per answer the queue time here and at the engine. */
export function routerObserver(metrics: Metrics): RouterObserver {
  // One child per shard, made once (a shed bid is the path that must stay cheap).
  const shedOf = new Map<number, { inc(): void }>();
  return {
    shed: (shard) => {
      let counter = shedOf.get(shard);
      if (!counter) shedOf.set(shard, (counter = metrics.shed.labels({ shard: String(shard) })));
      counter.inc();
    },
    resent: (shard, requests) => metrics.resent.inc({ shard: String(shard) }, requests),
    answered: ({ shard, waitedHereMs, engineQueuedMs, budget }) => {
      const label = String(shard);
      metrics.queueSeconds.observe({ shard: label, at: 'here' }, waitedHereMs / 1_000);
      if (engineQueuedMs !== undefined)
        metrics.queueSeconds.observe({ shard: label, at: 'engine' }, engineQueuedMs / 1_000);
      metrics.admissionBudget.set({ shard: label }, budget);
    },
  };
}
