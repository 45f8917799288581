#!/usr/bin/env node
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { ConfigError } from '../protocol/config-error.js';
import { loadAuditConfig, USAGE, type AuditConfig } from './config.js';
import { ReadPool } from './read-pool.js';
import { pullMessagesFor, ShardAudit } from './shard-audit.js';
import { shardFile } from './shard-db.js';
import { verifyShard } from './verify.js';
import { verifyOnWorker } from './verify-worker.js';
import { guardUnhandledRejections } from '../service/unhandled-rejections.js';
import { logConnectionStatus } from '../service/nats-status.js';
import { watchForSilentServer } from '../service/nats-watchdog.js';
import { answerStatus, roleConnectOptions } from '../protocol/cluster.js';

async function main(): Promise<void> {
  let config: AuditConfig;
  try {
    config = loadAuditConfig(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
  const { natsUrl, shards, dataDir, command } = config;
  // Reconnect for as long as it takes, like the engines and gateways (verify is a one-shot: it gives up).
  const nc = await connect({
    servers: natsUrl.split(','),
    name: `audit ${command}`,
    maxReconnectAttempts: command === 'run' ? -1 : 10,
    ...roleConnectOptions('audit'),
  }).catch((error: unknown) => {
    process.stderr.write(`cannot reach NATS at ${natsUrl}: ${(error as Error).message}\n`);
    process.exit(3);
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);

  if (command === 'verify') {
    let failed = 0;
    for (const shard of shards) {
      const result = await verifyShard(nc, js, jsm, shard, shardFile(dataDir, shard));
      if (!result.ok) failed++;
      process.stdout.write(
        config.json
          ? `${JSON.stringify(result)}\n`
          : result.ok
            ? `shard ${shard}: ok, ${result.events} events to seq ${result.lastSeq}, stream message ${result.fileStreamSeq} of ${result.streamLastSeq}, hash ${result.runningHash.slice(0, 16)}\n`
            : `shard ${shard}: MISMATCH: ${result.difference}\n`,
      );
    }
    await nc.close();
    process.exit(failed ? 1 : 0);
  }

  const logger = pino({ level: config.logLevel, base: { service: 'audit', pid: process.pid } });
  const rejections = guardUnhandledRejections(logger);
  logConnectionStatus(nc, logger);
  watchForSilentServer(nc, logger);
  const reads = new ReadPool({
    dataDir,
    natsUrl,
    shards,
    size: config.readWorkers,
    pendingMax: config.readsPendingMax,
    logger,
  });
  const audits = shards.map(
    (shard) =>
      new ShardAudit({
        shard,
        nc,
        js,
        jsm,
        dataDir,
        logger,
        fetchMax: config.fetchMax,
        chunkBytesMax: config.chunkBytesMax,
        commitIntervalMs: config.commitIntervalMs,
        stallCheckMs: config.stallCheckMs,
        reads,
        pullMessagesMax: pullMessagesFor(shards.length),
        verify: (shard, file) => verifyOnWorker(natsUrl, shard, file),
      }),
  );
  const startedAt = Date.now();
  answerStatus(nc, () => ({
    kind: 'audit',
    id: `audit-${process.pid}`,
    pid: process.pid,
    startedAt,
    shards: audits.map((a) => a.statusReport()),
    unhandledRejections: rejections.total,
  }));
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    await Promise.all(audits.map((a) => a.stop()));
    await reads.close();
    await nc.drain();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await Promise.all(audits.map((a) => a.start()));
  // Queries are the read workers' to answer: ready once they have subscribed.
  await reads.ready();
  logger.info({ shards, dataDir }, 'audit ready');
}

main().catch((error: unknown) => {
  process.stderr.write(`audit failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
