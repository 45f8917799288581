import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino, type Logger } from 'pino';
import { loadConfig, USAGE } from './config.js';
import { ConfigError } from '../protocol/config-error.js';
import { EngineCluster } from './cluster.js';
import { LEASE_BUCKET } from '../protocol/names.js';
import { join } from 'node:path';
import { ShardCopy } from '../shard/copy.js';
import { ShardLog } from '../shard/nats-log.js';
import { KvLeaseStore } from '../replica/kv-lease-store.js';
import { LeaseBucketProbe, probeKey } from '../replica/lease-bucket-probe.js';
import { SnapshotTurns } from '../shard/snapshot-turns.js';
import { SnapshotStore } from '../shard/snapshot-store.js';
import { nodeClock } from '../shard/node-clock.js';
import { natsBus } from '../shard/nats-bus.js';
import { EngineMetrics } from './metrics.js';
import { answerStatus, roleConnectOptions } from '../protocol/cluster.js';
import { openBucket } from '../protocol/provisioning.js';
import { isTransientNatsFailure } from '../protocol/nats-errors.js';
import { guardUnhandledRejections } from '../service/unhandled-rejections.js';
import { logConnectionStatus } from '../service/nats-status.js';
import { watchForSilentServer } from '../service/nats-watchdog.js';

/** Transient NATS failures while starting (timeouts, no stream leader yet) are retried this long. */
const START_RETRY_MS = 60_000;

/** Runs `attempt` again after transient NATS failures, for up to START_RETRY_MS; other errors end the start. */
async function untilAnswered<T>(what: string, logger: Logger, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + START_RETRY_MS;
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isTransientNatsFailure(error) || Date.now() > deadline) throw error;
      logger.warn({ err: (error as Error).message, tries }, `${what} failed; retrying`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * tries)));
    }
  }
}

/**
 * The engine process, in either role: every shard it runs gets its own copy
 * (shard/copy.ts) on this one thread, serving the shard while it holds the
 * shard's lease and following the log as a hot standby otherwise. `engine`
 * starts as primary, `replica` as a standby.
 */
export async function runEngineProcess(argv: string[], role: 'primary' | 'replica'): Promise<void> {
  let config;
  try {
    config = loadConfig(argv, process.env, { role });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const writer = `e-${randomBytes(6).toString('hex')}`;
  const logger = pino({
    level: config.logLevel,
    base: {
      service: config.role === 'replica' ? 'replica' : 'engine',
      engineId: config.engineId,
      writer,
      pid: process.pid,
    },
  });
  const rejections = guardUnhandledRejections(logger);
  const nc = await connect({
    servers: config.natsUrl.split(','),
    name: `engine ${writer}`,
    maxReconnectAttempts: -1,
    ...roleConnectOptions('engine'),
  });
  const startedAt = Date.now();
  logConnectionStatus(nc, logger);
  watchForSilentServer(nc, logger);
  // nats.js waits 5 s for a JetStream API answer by default; after a stream leader's election a rebuild or
  // takeover that asked in the meantime would then wait out the rest of those 5 s (found by make chaos).
  const js = jetstream(nc, { timeout: config.jetstreamTimeoutMs });
  const jsm = await untilAnswered('reaching JetStream', logger, () =>
    jetstreamManager(nc, { timeout: config.jetstreamTimeoutMs }),
  );
  // The leases have a connection of their own: on the shared one, a renewal waited behind megabytes of
  // appends and command replies queued in both directions, and under a bulk load (make bench-scale listing
  // 12k auctions/s over 8 shards) every copy's renewals came later than the 1 s TTL: replicas took over,
  // primaries were deposed, the shards flapped between them for as long as the load lasted.
  const leaseNc = await connect({
    servers: config.natsUrl.split(','),
    name: `engine ${writer} leases`,
    maxReconnectAttempts: -1,
    ...roleConnectOptions('engine'),
  });
  logConnectionStatus(leaseNc, logger.child({ connection: 'leases' }));
  watchForSilentServer(leaseNc, logger.child({ connection: 'leases' }));
  const leaseJs = jetstream(leaseNc, { timeout: config.jetstreamTimeoutMs });
  // With those short deadlines, a start during a stream leader's election would fail at once: the bucket is
  // opened again until the cluster answers (make chaos: an engine restarted right after a NATS node's loss exited).
  const leases = new LeaseBucketProbe(
    new KvLeaseStore(
      await untilAnswered('opening the lease bucket', logger, () =>
        openBucket(leaseJs, LEASE_BUCKET, config.streamReplicas),
      ),
    ),
    nodeClock,
    probeKey(config.engineId),
    config.leaseRenewMs,
  );
  leases.start();
  const bus = natsBus(nc);
  const metrics = new EngineMetrics();
  const metricsServer = config.metricsPort === null ? null : await metrics.serve(config.metricsPort);
  const engines = new Map<number, ShardCopy>();
  // One periodic snapshot of this process's shards at a time (shard/snapshot-turns.ts).
  const snapshotTurns = new SnapshotTurns();
  const startShard = async (shard: number) => {
    const engine = new ShardCopy({
      shard,
      logger,
      writer,
      bus,
      log: new ShardLog(nc, js, jsm, shard),
      snapshots: new SnapshotStore(join(config.dataDir, `shard-${shard}`)),
      clock: nodeClock,
      engineId: config.engineId,
      auctionsMax: config.auctionsMax,
      idempotencyEntriesMax: config.idempotencyEntriesMax,
      streamReplicas: config.streamReplicas,
      batchEventsMax: config.batchEventsMax,
      batchesInFlightMax: config.batchesInFlightMax,
      pendingCommandsMax: config.pendingCommandsMax,
      queueMsMax: config.queueMsMax,
      appendTimeoutMs: config.appendTimeoutMs,
      snapshotEveryEvents: config.snapshotEveryEvents,
      snapshotEveryMs: config.snapshotEveryMs,
      snapshotTurns,
      lease: { store: leases, ttlMs: config.leaseTtlMs, renewMs: config.leaseRenewMs },
      preferFollow: config.role === 'replica',
      onFatal: () => process.exit(70),
      onTransition: (transition) => metrics.observe(transition),
      load: metrics.loadOf(shard),
    });
    engines.set(shard, engine);
    await engine.start();
  };
  const stopShard = async (shard: number) => {
    const engine = engines.get(shard);
    engines.delete(shard);
    await engine?.stop();
  };
  // A deposed shard is no longer ours to announce; placement decides whether to take it again.
  const running = () => [...engines].filter(([, e]) => e.roleName !== 'stopped').map(([s]) => s);

  const cluster =
    config.shardCount === null
      ? null
      : new EngineCluster({
          nc,
          logger,
          engineId: config.engineId,
          shardCount: config.shardCount,
          heartbeatMs: config.heartbeatMs,
          expiryMs: config.engineExpiryMs,
          running,
          startShard,
          stopShard: async (shard) => stopShard(shard),
        });

  // Operators (auctionctl status) ask every process at once; each answers for itself.
  answerStatus(nc, () => ({
    kind: 'engine',
    id: config.engineId,
    role: config.role,
    pid: process.pid,
    startedAt,
    shardCount: config.shardCount,
    shards: [...engines.values()].map((e) => e.statusReport()),
    unhandledRejections: rejections.total,
  }));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    await cluster?.stop();
    await Promise.all([...engines.keys()].map(stopShard));
    leases.stop();
    await Promise.all([nc.drain(), leaseNc.drain()]);
    metricsServer?.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  if (cluster) await cluster.start();
  else await Promise.all(config.shards!.map(startShard));
  logger.info(
    { shards: running(), role: config.role, shardCount: config.shardCount, nats: config.natsUrl },
    'engine ready',
  );
}

export function exitOnFailure(error: unknown): never {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`engine failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
}
