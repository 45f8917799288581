import { ConfigError } from '../protocol/config-error.js';
import { flagUsage, readFlags } from '../service/flags.js';

export type GatewayConfig = {
  host: string;
  port: number;
  natsUrl: string;
  /** HMAC secret for tokens: GATEWAY_SECRET, or read from --secret-file (created with a random secret when missing). */
  secret: string | null;
  secretFile: string;
  tokenTtlMs: number;
  logLevel: string;
  streamReplicas: number;
  commandTimeoutMs: number;
  /** Largest HTTP body and WebSocket frame accepted (bytes). */
  bodyBytesMax: number;
  frameBytesMax: number;
  /** uWS: bytes buffered for one socket before broadcast messages to it are dropped (and resent when it drains). */
  backpressureBytesMax: number;
  idleTimeoutSeconds: number;
  subscriptionsPerConnectionMax: number;
  /** Token buckets: commands per user, messages per connection, logins/registrations per client address. */
  userCommandsPerSec: number;
  connectionMessagesPerSec: number;
  addressAuthPerSec: number;
  /** Token bucket per client address for reads (GETs; a search costs one per shard it asks). */
  addressReadsPerSec: number;
  /** Long-lived connections (gateway/connection-limits.ts). */
  wsPerAddressMax: number;
  wsPerUserMax: number;
  wsMax: number;
  ssePerAddressMax: number;
  sseMax: number;
  /** How long a missing auction or shard is answered as missing without asking the engines again. */
  missTtlMs: number;
  /** scrypt cost (N, a power of two) for new password hashes; older hashes are upgraded at the next sign-in. */
  passwordHashCost: number;
  /** Commands waiting for the engines in this gateway at most. */
  pendingCommandsMax: number;
  /** Command requests to one shard awaiting answers; commands arriving meanwhile wait and leave together. */
  shardRequestsInFlightMax: number;
  /** Admission control (gateway/admission.ts): the wait a bid admitted for a shard may expect, in ms. */
  queueTargetMs: number;
  /** Admission control: the most commands outstanding for one shard from this gateway. */
  shardCommandsInFlightMax: number;
  /** Event-loop lag over which this gateway sheds bids at the frame (gateway/saturation.ts), in ms; 0: never. */
  loopLagTargetMs: number;
};

export const OPTIONS = {
  host: ['HOST', '127.0.0.1'],
  port: ['PORT', '8080'],
  nats: ['NATS_URL', 'nats://127.0.0.1:4222'],
  'secret-file': ['GATEWAY_SECRET_FILE', '.data/gateway-secret'],
  'token-ttl-ms': ['TOKEN_TTL_MS', String(24 * 3_600_000)],
  'log-level': ['LOG_LEVEL', 'info'],
  'stream-replicas': ['STREAM_REPLICAS', '1'],
  'command-timeout-ms': ['COMMAND_TIMEOUT_MS', '2000'],
  'body-bytes-max': ['BODY_BYTES_MAX', String(64 * 1024)],
  'frame-bytes-max': ['FRAME_BYTES_MAX', String(16 * 1024)],
  'backpressure-bytes-max': ['BACKPRESSURE_BYTES_MAX', String(1024 * 1024)],
  'idle-timeout-seconds': ['IDLE_TIMEOUT_SECONDS', '120'],
  'subscriptions-per-connection-max': ['SUBSCRIPTIONS_PER_CONNECTION_MAX', '1000'],
  'user-commands-per-sec': ['USER_COMMANDS_PER_SEC', '100'],
  'connection-messages-per-sec': ['CONNECTION_MESSAGES_PER_SEC', '1000'],
  'address-auth-per-sec': ['ADDRESS_AUTH_PER_SEC', '20'],
  'address-reads-per-sec': ['ADDRESS_READS_PER_SEC', '200'],
  'ws-per-address-max': ['WS_PER_ADDRESS_MAX', '100'],
  'ws-per-user-max': ['WS_PER_USER_MAX', '20'],
  'ws-max': ['WS_MAX', '100000'],
  'sse-per-address-max': ['SSE_PER_ADDRESS_MAX', '50'],
  'sse-max': ['SSE_MAX', '20000'],
  'miss-ttl-ms': ['MISS_TTL_MS', '1000'],
  'password-hash-cost': ['PASSWORD_HASH_COST', String(2 ** 17)],
  'pending-commands-max': ['PENDING_COMMANDS_MAX', '100000'],
  'shard-requests-in-flight-max': ['SHARD_REQUESTS_IN_FLIGHT_MAX', '2'],
  'queue-target-ms': ['QUEUE_TARGET_MS', '200'],
  'shard-commands-in-flight-max': ['SHARD_COMMANDS_IN_FLIGHT_MAX', '100000'],
  'loop-lag-target-ms': ['LOOP_LAG_TARGET_MS', '50'],
} as const;

export const USAGE = `usage: gateway [--flag value]...
${flagUsage(OPTIONS)}
  The token secret is GATEWAY_SECRET when set; otherwise it is read from the secret
  file, which is created with a random secret if missing. Every gateway of a
  cluster must share it.`;

/** scrypt's N: a power of two from 2^14 (the old default, kept readable) to 2^20. */
function hashCost(n: number): number {
  if (n < 2 ** 14 || n > 2 ** 20 || (n & (n - 1)) !== 0)
    throw new ConfigError(`--password-hash-cost must be a power of two from 16384 to 1048576, got ${n}`);
  return n;
}

export function loadGatewayConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const { get } = readFlags(OPTIONS, argv, env);
  const int = (flag: keyof typeof OPTIONS, min = 1) => {
    const value = Number(get(flag));
    if (!Number.isSafeInteger(value) || value < min)
      throw new ConfigError(`--${flag} must be an integer >= ${min}, got ${get(flag)}`);
    return value;
  };
  const port = int('port', 0);
  if (port > 65_535) throw new ConfigError('--port must be at most 65535');
  const secret = env.GATEWAY_SECRET || null;
  if (secret !== null && secret.length < 16) throw new ConfigError('GATEWAY_SECRET must be at least 16 characters');
  return {
    host: get('host'),
    port,
    natsUrl: get('nats'),
    secret,
    secretFile: get('secret-file'),
    tokenTtlMs: int('token-ttl-ms'),
    logLevel: get('log-level'),
    streamReplicas: int('stream-replicas'),
    commandTimeoutMs: int('command-timeout-ms'),
    bodyBytesMax: int('body-bytes-max'),
    frameBytesMax: int('frame-bytes-max'),
    backpressureBytesMax: int('backpressure-bytes-max'),
    idleTimeoutSeconds: int('idle-timeout-seconds', 8),
    subscriptionsPerConnectionMax: int('subscriptions-per-connection-max'),
    userCommandsPerSec: int('user-commands-per-sec'),
    connectionMessagesPerSec: int('connection-messages-per-sec'),
    addressAuthPerSec: int('address-auth-per-sec'),
    addressReadsPerSec: int('address-reads-per-sec'),
    wsPerAddressMax: int('ws-per-address-max'),
    wsPerUserMax: int('ws-per-user-max'),
    wsMax: int('ws-max'),
    ssePerAddressMax: int('sse-per-address-max'),
    sseMax: int('sse-max'),
    missTtlMs: int('miss-ttl-ms', 0),
    passwordHashCost: hashCost(int('password-hash-cost')),
    pendingCommandsMax: int('pending-commands-max'),
    shardRequestsInFlightMax: int('shard-requests-in-flight-max'),
    queueTargetMs: int('queue-target-ms'),
    shardCommandsInFlightMax: int('shard-commands-in-flight-max'),
    loopLagTargetMs: int('loop-lag-target-ms', 0),
  };
}
