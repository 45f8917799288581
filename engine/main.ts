#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { ConfigError, loadConfig, USAGE } from './config.js';
import { EngineCluster } from './cluster.js';
import { ShardEngine } from './shard.js';

/**
 * The engine process: the single writer of its shards. Every shard gets its
 * own pipeline (engine/shard.ts) on this one thread.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const writer = `e-${randomBytes(6).toString('hex')}`;
  const logger = pino({ level: config.logLevel, base: { service: 'engine', writer, pid: process.pid } });
  const nc = await connect({ servers: config.natsUrl.split(','), name: `engine ${writer}`, maxReconnectAttempts: -1 });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const engines = new Map<number, ShardEngine>();
  const startShard = async (shard: number) => {
    const engine = new ShardEngine({
      shard, nc, js, jsm, logger, writer,
      engineId: config.engineId,
      dataDir: config.dataDir,
      auctionsMax: config.auctionsMax,
      idempotencyEntriesMax: config.idempotencyEntriesMax,
      streamReplicas: config.streamReplicas,
      batchEventsMax: config.batchEventsMax,
      batchesInFlightMax: config.batchesInFlightMax,
      pendingCommandsMax: config.pendingCommandsMax,
      appendTimeoutMs: config.appendTimeoutMs,
      snapshotEveryEvents: config.snapshotEveryEvents,
      snapshotEveryMs: config.snapshotEveryMs,
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
  const running = () => [...engines].filter(([, e]) => e.state === 'serving' || e.state === 'starting' || e.state === 'resyncing').map(([s]) => s);

  const cluster = config.shardCount === null ? null : new EngineCluster({
    nc, logger, engineId: config.engineId, shardCount: config.shardCount,
    heartbeatMs: config.heartbeatMs, expiryMs: config.engineExpiryMs,
    running,
    startShard,
    stopShard: async (shard) => stopShard(shard),
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    await cluster?.stop();
    await Promise.all([...engines.keys()].map(stopShard));
    await nc.drain();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  if (cluster) await cluster.start();
  else await Promise.all(config.shards!.map(startShard));
  logger.info({ shards: running(), shardCount: config.shardCount, engineId: config.engineId, nats: config.natsUrl }, 'engine ready');
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`engine failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
