#!/usr/bin/env node
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { ConfigError } from '../protocol/config-error.js';
import { EngineClient, NOTIFICATION_ACKS_BUCKET } from '../protocol/index.js';
import { loadSecret, Tokens, UserStore } from './auth.js';
import { USER_FLAGS_BUCKET, USERS_BUCKET } from '../protocol/names.js';
import { PasswordHasher } from './passwords.js';
import { guardUnhandledRejections } from '../service/unhandled-rejections.js';
import { logConnectionStatus } from '../service/nats-status.js';
import { watchForSilentServer } from '../service/nats-watchdog.js';
import { loadGatewayConfig, USAGE } from './config.js';
import { LiveFeed } from './live/feed.js';
import { createMetrics, routerObserver } from './metrics.js';
import { NotificationCenter } from './notifications.js';
import { CommandRouter } from './router.js';
import { LoopSaturation } from './saturation.js';
import { GatewayServer } from './server.js';
import { serveAdmin } from './admin.js';
import { DisabledUsers } from './disabled-users.js';
import { roleConnectOptions } from '../protocol/cluster.js';
import { openBucket } from '../protocol/provisioning.js';
import { hostname } from 'node:os';

async function main(): Promise<void> {
  let config;
  try {
    config = loadGatewayConfig(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const logger = pino({ level: config.logLevel, base: { service: 'gateway', pid: process.pid } });
  const metrics = createMetrics();
  const rejections = guardUnhandledRejections(logger, () => metrics.unhandledRejections.inc());
  const { secret, generated } = loadSecret(config.secret, config.secretFile);
  if (generated)
    logger.warn(
      { file: config.secretFile },
      'generated a token secret for this machine; set GATEWAY_SECRET (the same for every gateway) in production',
    );
  const nc = await connect({
    servers: config.natsUrl.split(','),
    name: 'gateway',
    maxReconnectAttempts: -1,
    ...roleConnectOptions('gateway'),
  }).catch((error: unknown) => {
    process.stderr.write(`cannot reach NATS at ${config.natsUrl}: ${(error as Error).message}\n`);
    process.exit(3);
  });
  logConnectionStatus(nc, logger);
  watchForSilentServer(nc, logger);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const usersKv = await openBucket(js, USERS_BUCKET, config.streamReplicas);
  const acksKv = await openBucket(js, NOTIFICATION_ACKS_BUCKET, config.streamReplicas);
  let server: GatewayServer | null = null;
  // Opened (or, on a server without users, created) only to be there: the gateway follows it without a KV watch.
  await openBucket(js, USER_FLAGS_BUCKET, config.streamReplicas);
  const disabled = new DisabledUsers({ nc, jsm, logger });
  await disabled.start((userId) => server?.endUserSessions(userId));
  const tokens = new Tokens(secret, config.tokenTtlMs, Date.now, (userId) => disabled.has(userId));
  const engines = new EngineClient(nc, config.commandTimeoutMs);
  const saturation = new LoopSaturation({
    lagTargetMs: config.loopLagTargetMs,
    onShareChange: (share) => metrics.shedShare.set(share),
  });
  saturation.start();
  const router = new CommandRouter(engines, {
    pendingMax: config.pendingCommandsMax,
    requestsInFlightMax: config.shardRequestsInFlightMax,
    admission: { queueTargetMs: config.queueTargetMs, inFlightMax: config.shardCommandsInFlightMax },
    observer: routerObserver(metrics),
    lateWithin: (from, to) => saturation.lateWithin(from, to),
  });
  const live = new LiveFeed({
    nc,
    jsm,
    engines,
    logger,
    missTtlMs: config.missTtlMs,
    onStates: (states) => server?.publishStates(states),
    onFence: (shard) => {
      const requests = router.primaryChanged(shard);
      if (requests > 0)
        logger.info({ shard, requests }, 'a new primary fenced the shard: requests in flight sent again');
    },
  });
  const notifications = new NotificationCenter(nc, jsm, acksKv, logger);
  server = new GatewayServer({
    config,
    logger,
    nc,
    engines,
    live,
    notifications,
    metrics,
    router,
    saturation,
    tokens,
    users: new UserStore(usersKv, new PasswordHasher(config.passwordHashCost), logger),
  });
  await live.start();
  await notifications.start((userId, n) => server?.deliverNotification(userId, n));
  const port = await server.listen();
  const startedAt = Date.now();
  const adminSubs = serveAdmin(
    nc,
    tokens,
    {
      id: `${hostname()}:${port}`,
      startedAt,
      listen: () => `${config.host}:${port}`,
      connections: () => server?.connectionCount ?? 0,
      subscriptions: () => server?.subscriptions ?? 0,
      unhandledRejections: () => rejections.total,
    },
    logger,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    server?.close();
    for (const sub of adminSubs) sub.unsubscribe();
    disabled.stop();
    saturation.stop();
    live.stop();
    notifications.stop();
    await nc.drain();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  logger.info({ host: config.host, port, nats: config.natsUrl, shards: live.knownShards() }, 'gateway ready');
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`gateway failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
