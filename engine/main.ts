#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { ConfigError, loadConfig, USAGE } from './config.js';
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
  const engines = config.shards.map(
    (shard) =>
      new ShardEngine({
        shard, nc, js, jsm, logger, writer,
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
      }),
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    await Promise.all(engines.map((e) => e.stop()));
    await nc.drain();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await Promise.all(engines.map((e) => e.start()));
  logger.info({ shards: config.shards, nats: config.natsUrl }, 'engine ready');
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`engine failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
