#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { parseShards } from '../engine/config.js';
import { ShardAudit, shardFile } from './shard-audit.js';
import { verifyShard } from './verify.js';
import { guardUnhandledRejections } from '../service/unhandled-rejections.js';
import { answerStatus, roleConnectOptions } from '../protocol/cluster.js';

const USAGE = `usage: audit [verify] [--nats URL] [--shards 0-3] [--data-dir DIR] [--log-level L] [--fetch-max N] [--chunk-bytes-max N] [--json]
  audit          follow the shards' streams into one SQLite file per shard and answer queries
  audit verify   prove each file matches its stream; exit 1 naming the first difference
  env: NATS_URL, SHARDS, AUDIT_DIR, LOG_LEVEL`;

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        nats: { type: 'string' }, shards: { type: 'string' }, 'data-dir': { type: 'string' }, 'log-level': { type: 'string' },
        'fetch-max': { type: 'string' }, 'chunk-bytes-max': { type: 'string' }, json: { type: 'boolean' },
      },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const { values, positionals } = parsed;
  const natsUrl = values.nats ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const shards = parseShards(values.shards ?? process.env.SHARDS ?? '0');
  const dataDir = values['data-dir'] ?? process.env.AUDIT_DIR ?? '.data/audit';
  const command = positionals[0] ?? 'run';
  if (command !== 'run' && command !== 'verify') {
    process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
    process.exit(2);
  }
  // Reconnect for as long as it takes, like the engines and gateways (verify is a one-shot: it gives up).
  const nc = await connect({ servers: natsUrl.split(','), name: `audit ${command}`, maxReconnectAttempts: command === 'run' ? -1 : 10, ...roleConnectOptions('audit') }).catch((error: unknown) => {
    process.stderr.write(`cannot reach NATS at ${natsUrl}: ${(error as Error).message}\n`);
    process.exit(3);
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);

  if (command === 'verify') {
    let failed = 0;
    for (const shard of shards) {
      const result = await verifyShard(js, jsm, shard, shardFile(dataDir, shard));
      if (!result.ok) failed++;
      process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : result.ok
        ? `shard ${shard}: ok, ${result.events} events to seq ${result.lastSeq}, stream message ${result.fileStreamSeq} of ${result.streamLastSeq}, hash ${result.runningHash.slice(0, 16)}\n`
        : `shard ${shard}: MISMATCH: ${result.difference}\n`);
    }
    await nc.close();
    process.exit(failed ? 1 : 0);
  }

  const logger = pino({ level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info', base: { service: 'audit', pid: process.pid } });
  const rejections = guardUnhandledRejections(logger);
  const audits = shards.map((shard) => new ShardAudit({
    shard, nc, js, jsm, dataDir, logger,
    fetchMax: Number(values['fetch-max'] ?? 256),
    chunkBytesMax: Number(values['chunk-bytes-max'] ?? 1 << 20),
  }));
  const startedAt = Date.now();
  answerStatus(nc, () => ({ kind: 'audit', id: `audit-${process.pid}`, pid: process.pid, startedAt, shards: audits.map((a) => a.statusReport()), unhandledRejections: rejections.total }));
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    await Promise.all(audits.map((a) => a.stop()));
    await nc.drain();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await Promise.all(audits.map((a) => a.start()));
  logger.info({ shards, dataDir }, 'audit ready');
}

main().catch((error: unknown) => {
  process.stderr.write(`audit failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
