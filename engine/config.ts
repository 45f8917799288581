import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { SHARDS_MAX } from '../protocol/index.js';
import { ConfigError, parseShards } from '../protocol/config-error.js';
import { SHARD_DEFAULTS } from '../protocol/shard-stream.js';
import { isEngineId } from '../protocol/operations.js';
import { flagUsage, positiveInteger, readFlags } from '../service/flags.js';

export type EngineConfig = {
  natsUrl: string;
  /** Static mode: serve exactly these shards. */
  shards: number[] | null;
  /** Placement mode: the cluster's shard count, shared out by rendezvous hashing over live engines. */
  shardCount: number | null;
  /** Stable across restarts, so a restarted engine gets its shards back. */
  engineId: string;
  heartbeatMs: number;
  engineExpiryMs: number;
  /** primary: lead shards whose lease is free; replica: follow first, lead only when a lease expires. */
  role: 'primary' | 'replica';
  leaseTtlMs: number;
  leaseRenewMs: number;
  dataDir: string;
  logLevel: string;
  streamReplicas: number;
  auctionsMax: number;
  idempotencyEntriesMax: number;
  batchEventsMax: number;
  batchesInFlightMax: number;
  pendingCommandsMax: number;
  /** A request arriving while the oldest queued one has waited this long is shed (`overloaded`). */
  queueMsMax: number;
  appendTimeoutMs: number;
  /** Deadline of every other JetStream request (stream info, consumers, lease KV): a retry comes sooner. */
  jetstreamTimeoutMs: number;
  snapshotEveryEvents: number;
  snapshotEveryMs: number;
  /** Prometheus metrics on http://127.0.0.1:<port>/metrics; null: none. */
  metricsPort: number | null;
};

/** Flag name -> [environment variable, default] (service/flags.ts). */
export const OPTIONS = {
  nats: ['NATS_URL', 'nats://127.0.0.1:4222'],
  shards: ['SHARDS', ''],
  'shard-count': ['SHARD_COUNT', ''],
  'engine-id': ['ENGINE_ID', ''],
  'heartbeat-ms': ['HEARTBEAT_MS', '500'],
  'engine-expiry-ms': ['ENGINE_EXPIRY_MS', '2000'],
  role: ['ROLE', 'primary'],
  'lease-ttl-ms': ['LEASE_TTL_MS', '1000'],
  'lease-renew-ms': ['LEASE_RENEW_MS', '200'],
  'data-dir': ['DATA_DIR', '.data/engine'],
  'log-level': ['LOG_LEVEL', 'info'],
  'stream-replicas': ['STREAM_REPLICAS', String(SHARD_DEFAULTS.streamReplicas)],
  'auctions-max': ['AUCTIONS_MAX', String(SHARD_DEFAULTS.auctionsMax)],
  'idempotency-entries': ['IDEMPOTENCY_ENTRIES', String(SHARD_DEFAULTS.idempotencyEntriesMax)],
  'batch-events-max': ['BATCH_EVENTS_MAX', '4096'],
  'batches-in-flight-max': ['BATCHES_IN_FLIGHT_MAX', '8'],
  'pending-commands-max': ['PENDING_COMMANDS_MAX', '100000'],
  'queue-ms-max': ['QUEUE_MS_MAX', '500'],
  'append-timeout-ms': ['APPEND_TIMEOUT_MS', '2000'],
  'jetstream-timeout-ms': ['JETSTREAM_TIMEOUT_MS', '1000'],
  'snapshot-every-events': ['SNAPSHOT_EVERY_EVENTS', '1000000'],
  'snapshot-every-ms': ['SNAPSHOT_EVERY_MS', '60000'],
  'metrics-port': ['METRICS_PORT', ''],
} as const;

export const USAGE = `usage: engine [--flag value]...
${flagUsage(OPTIONS)}
  --shards takes a list such as 0,1,2 or 0-7 and serves exactly those. Without it,
  --shard-count N shares shards 0..N-1 among the live engines (rendezvous hashing);
  with neither the engine serves shard 0. --engine-id defaults to host-<hash of the data dir>.`;

function portNumber(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw new ConfigError(`--metrics-port must be a TCP port, got ${text}`);
  return port;
}

/** Engine ids appear in subjects: letters, digits, '-' and '_' only. */
function engineIdOf(given: string, dataDir: string): string {
  if (given) {
    if (!isEngineId(given)) throw new ConfigError(`--engine-id takes 1..64 of [A-Za-z0-9_-], got ${given as string}`);
    return given;
  }
  const host = hostname()
    .replace(/[^A-Za-z0-9_-]/g, '_')
    .slice(0, 40);
  return `${host}-${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 8)}`;
}

export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  defaults: Partial<Record<keyof typeof OPTIONS, string>> = {},
): EngineConfig {
  const { get } = readFlags(OPTIONS, argv, env, { defaults });
  const int = (flag: keyof typeof OPTIONS) => positiveInteger(flag, get(flag));
  const shardList = get('shards');
  const shardCountText = get('shard-count');
  const shardCount = shardCountText ? positiveInteger('shard-count', shardCountText) : null;
  if (shardCount !== null && shardCount > SHARDS_MAX) throw new ConfigError(`--shard-count is at most ${SHARDS_MAX}`);
  const dataDir = get('data-dir');
  const role = get('role');
  if (role !== 'primary' && role !== 'replica') throw new ConfigError(`--role is primary or replica, got ${role}`);
  const leaseTtlMs = int('lease-ttl-ms');
  const leaseRenewMs = int('lease-renew-ms');
  if (leaseRenewMs * 3 > leaseTtlMs)
    throw new ConfigError('--lease-renew-ms must be at most a third of --lease-ttl-ms');
  return {
    role,
    leaseTtlMs,
    leaseRenewMs,
    natsUrl: get('nats'),
    shards: shardList ? parseShards(shardList) : shardCount === null ? [0] : null,
    shardCount: shardList ? null : shardCount,
    engineId: engineIdOf(get('engine-id'), dataDir),
    heartbeatMs: int('heartbeat-ms'),
    engineExpiryMs: int('engine-expiry-ms'),
    dataDir,
    logLevel: get('log-level'),
    streamReplicas: int('stream-replicas'),
    auctionsMax: int('auctions-max'),
    idempotencyEntriesMax: int('idempotency-entries'),
    batchEventsMax: int('batch-events-max'),
    batchesInFlightMax: int('batches-in-flight-max'),
    pendingCommandsMax: int('pending-commands-max'),
    queueMsMax: int('queue-ms-max'),
    appendTimeoutMs: int('append-timeout-ms'),
    jetstreamTimeoutMs: int('jetstream-timeout-ms'),
    snapshotEveryEvents: int('snapshot-every-events'),
    snapshotEveryMs: int('snapshot-every-ms'),
    metricsPort: get('metrics-port') ? portNumber(get('metrics-port')) : null,
  };
}
