import { ConfigError, parseShards } from '../protocol/config-error.js';
import { flagUsage, positiveInteger, readFlags } from '../service/flags.js';

export type AuditConfig = {
  command: 'run' | 'verify';
  natsUrl: string;
  shards: number[];
  dataDir: string;
  logLevel: string;
  /** Messages, and bytes, applied in one transaction at most. */
  fetchMax: number;
  chunkBytesMax: number;
  commitIntervalMs: number;
  /** How often a pull that delivers nothing is checked against its stream (audit/consumer-stall.ts). */
  stallCheckMs: number;
  /** Worker threads answering queries (audit/read-pool.ts), and the reads each may have waiting. */
  readWorkers: number;
  readsPendingMax: number;
  /** verify: one JSON line per shard instead of text. */
  json: boolean;
};

/** Flag name -> [environment variable or null, default] (service/flags.ts; docs/audit.md). */
export const OPTIONS = {
  nats: ['NATS_URL', 'nats://127.0.0.1:4222'],
  shards: ['SHARDS', '0'],
  'data-dir': ['AUDIT_DIR', '.data/audit'],
  'log-level': ['LOG_LEVEL', 'info'],
  'fetch-max': [null, '256'],
  'chunk-bytes-max': [null, String(1 << 20)],
  'commit-interval-ms': [null, '20'],
  'stall-check-ms': [null, '5000'],
  'read-workers': [null, '2'],
  'reads-pending-max': [null, '256'],
} as const;

export const USAGE = `usage: audit [verify] [--flag value]... [--json]
  audit          follow the shards' streams into one SQLite file per shard and answer queries
  audit verify   prove each file matches its stream; exit 1 naming the first difference (--json: one line per shard)
${flagUsage(OPTIONS)}`;

/** The audit's configuration from its arguments and environment; a ConfigError names what is wrong. */
export function loadAuditConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): AuditConfig {
  let flags;
  try {
    flags = readFlags(OPTIONS, argv, env, { booleans: ['json'], positionals: true });
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const { get, isSet, positionals } = flags;
  const command = positionals[0] ?? 'run';
  if (command !== 'run' && command !== 'verify') throw new ConfigError(`unknown command ${command}`);
  return {
    command,
    natsUrl: get('nats'),
    shards: parseShards(get('shards')),
    dataDir: get('data-dir'),
    logLevel: get('log-level'),
    fetchMax: positiveInteger('fetch-max', get('fetch-max')),
    chunkBytesMax: positiveInteger('chunk-bytes-max', get('chunk-bytes-max')),
    commitIntervalMs: positiveInteger('commit-interval-ms', get('commit-interval-ms')),
    stallCheckMs: positiveInteger('stall-check-ms', get('stall-check-ms')),
    readWorkers: positiveInteger('read-workers', get('read-workers')),
    readsPendingMax: positiveInteger('reads-pending-max', get('reads-pending-max')),
    json: isSet('json'),
  };
}
