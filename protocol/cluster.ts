import { readFileSync } from 'node:fs';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { encode } from './wire.js';

/**
 * What the processes of a cluster share beyond commands and the log: the
 * subjects of operator (admin) actions, the status announcement every process
 * answers, and the NATS credentials and inbox prefix each process connects
 * with. The NATS permissions of each role are in protocol/permissions.ts;
 * docs/operations.md explains the set-up.
 */

export const adminSubjects = {
  /** close/cancel commands and the ops snapshot, step-down: served by a shard's primary. */
  engine: (shard: number) => `auction.admin.engine.${shard}`,
  /** `verify`: served by the audit process of a shard. */
  audit: (shard: number) => `auction.admin.audit.${shard}`,
  /** `mint`: served by any gateway (queue group). */
  gateway: 'auction.admin.gateway',
  all: 'auction.admin.>',
};

/** Every process answers a request here with a `ProcessStatus` (one reply each). */
export const STATUS_SUBJECT = 'auction.status';

/** Users an operator disabled: key `u<userId>` -> {disabledAt, reason}; gateways follow it. */
export const USER_FLAGS_BUCKET = 'auction_user_flags';
/**
 * Where the bucket's stream re-publishes every change (JetStream RePublish):
 * `$KV.auction_user_flags.u42` is seen on `auction.user_flags.u42`, with the
 * stream sequence and the KV operation in its headers. Gateways follow the
 * bucket there instead of through a KV watch (a consumer).
 */
export const USER_FLAGS_REPUBLISH = { src: `$KV.${USER_FLAGS_BUCKET}.>`, dest: 'auction.user_flags.>' };
export const USER_FLAGS_SUBJECTS = USER_FLAGS_REPUBLISH.dest;

export type ShardCopyStatus = {
  shard: number;
  status: string;
  engineId: string;
  writer: string;
  lastSeq: number;
  durableSeq: number;
  streamSeq: number;
  auctionsLive: number;
  pendingCommands: number;
  inflightBatches: number;
  lag: { messagesBehind: number; eventsBehindEstimate: number; msBehind: number };
  leaseHolder: string | null;
  leaderSince: number;
  /** The newest snapshot this copy wrote or loaded (null: none yet). */
  snapshot: { at: number; streamSeq: number; lastSeq: number } | null;
};

/** What every process reports: promise rejections nobody handled since it started (bugs; it keeps running). */
type ProcessHealth = { unhandledRejections?: number };

export type ProcessStatus = ProcessHealth & (
  | { kind: 'engine'; id: string; role: 'primary' | 'replica'; pid: number; startedAt: number; shards: ShardCopyStatus[]; /** Placement mode: the cluster's shard count; null for a static shard list. */ shardCount: number | null }
  | { kind: 'audit'; id: string; pid: number; startedAt: number; shards: { shard: number; streamSeq: number; eventSeq: number; eventCount: number; lagMs: number }[] }
  | { kind: 'gateway'; id: string; pid: number; startedAt: number; listen: string; connections: number; subscriptions: number });

/** Answers every `auctionctl status` request with this process's report, made when asked. */
export function answerStatus(nc: NatsConnection, report: () => ProcessStatus): Subscription {
  return nc.subscribe(STATUS_SUBJECT, { callback: (_e, msg) => void msg.respond(encode(report())) });
}

/**
 * NATS credentials of a process: NATS_USER and NATS_PASSWORD, or
 * NATS_CREDENTIALS naming a JSON file `{user, password}`. None: connect
 * without authentication (a server without users).
 */
export function natsCredentials(env: NodeJS.ProcessEnv = process.env): { user?: string; pass?: string } {
  if (env.NATS_USER) return { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? '' };
  if (env.NATS_CREDENTIALS) {
    const parsed = JSON.parse(readFileSync(env.NATS_CREDENTIALS, 'utf8')) as { user?: unknown; password?: unknown };
    if (typeof parsed?.user !== 'string' || typeof parsed.password !== 'string') throw new Error(`${env.NATS_CREDENTIALS}: expected {"user": "...", "password": "..."}`);
    return { user: parsed.user, pass: parsed.password };
  }
  return {};
}

export type Role = 'admin' | 'engine' | 'audit' | 'gateway';
export const ROLES: readonly Role[] = ['admin', 'engine', 'audit', 'gateway'];

/**
 * Replies to a role's requests (and its JetStream deliveries) arrive under
 * this prefix. Each role may subscribe only to its own, and publish only
 * into the prefixes of the roles it answers (protocol/permissions.ts), so no
 * credential can read or forge the replies meant for another role.
 */
export const inboxPrefix = (role: Role) => `_INBOX_${role}`;

/**
 * nats.js `connect` options of a process of `role`: its credentials (see
 * `natsCredentials`) and its role's inbox prefix. Without credentials (a
 * server without users) the prefix is harmless and the same code runs.
 */
export function roleConnectOptions(role: Role, env: NodeJS.ProcessEnv = process.env): { inboxPrefix: string; user?: string; pass?: string } {
  return { inboxPrefix: inboxPrefix(role), ...natsCredentials(env) };
}
