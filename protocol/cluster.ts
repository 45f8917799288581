import { readFileSync } from 'node:fs';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { encode } from './wire.js';

/**
 * What the processes of a cluster share beyond commands and the log: the
 * subjects of operator (admin) actions, the status announcement every process
 * answers, the NATS credentials each process connects with, and the NATS
 * permissions of each role. docs/operations.md explains the set-up.
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

/** Users an operator disabled: key `u<userId>` -> {disabledAt, reason}; gateways watch it. */
export const USER_FLAGS_BUCKET = 'auction_user_flags';

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

export type ProcessStatus =
  | { kind: 'engine'; id: string; role: 'primary' | 'replica'; pid: number; startedAt: number; shards: ShardCopyStatus[]; /** Placement mode: the cluster's shard count; null for a static shard list. */ shardCount: number | null }
  | { kind: 'audit'; id: string; pid: number; startedAt: number; shards: { shard: number; streamSeq: number; eventSeq: number; eventCount: number; lagMs: number }[] }
  | { kind: 'gateway'; id: string; pid: number; startedAt: number; listen: string; connections: number; subscriptions: number };

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

type Permissions = { publish: { allow?: string[]; deny?: string[] }; subscribe: { allow?: string[]; deny?: string[] } };

/**
 * NATS permissions per role. Only `admin` may publish operator actions
 * (`auction.admin.>`) or write the disabled-users bucket; only engines may
 * append to the shard logs or write leases. Services keep the JetStream API
 * they use (streams, consumers, KV, direct gets). Replies to requests go to
 * `_INBOX.>`, which every role may publish to. Not `allow_responses`: with it
 * the server remembers the reply subject of every message it delivers (each
 * request, each JetStream message) for two minutes, and scans that map on
 * every prune; under load its CPU grew step by step until the engine stalled.
 */
export const ROLE_PERMISSIONS: Record<Role, Permissions> = {
  admin: { publish: { allow: ['>'] }, subscribe: { allow: ['>'] } },
  engine: {
    publish: { allow: ['auction.log.*', 'auction.engines.heartbeat', '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', '$KV.auction_leases.>', '_INBOX.>'] },
    subscribe: { allow: ['auction.cmd.*', 'auction.ctl.*', 'auction.node.>', 'auction.admin.engine.*', 'auction.engines.heartbeat', STATUS_SUBJECT, '_INBOX.>'] },
  },
  audit: {
    publish: { allow: ['notify.>', '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', '_INBOX.>'] },
    subscribe: { allow: ['auction.audit.*', 'auction.admin.audit.*', STATUS_SUBJECT, '_INBOX.>'] },
  },
  gateway: {
    publish: {
      allow: ['auction.cmd.*', 'auction.ctl.*', 'auction.audit.*', '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', '$KV.auction_users.>', '$KV.notification_acks.>', '_INBOX.>'],
      deny: ['$JS.API.STREAM.DELETE.>', '$JS.API.STREAM.PURGE.>', '$JS.API.STREAM.MSG.DELETE.>'],
    },
    subscribe: { allow: ['auction.admin.gateway', STATUS_SUBJECT, '_INBOX.>'] },
  },
};

/** A nats-server `authorization` block giving each role its user and permissions. */
export function natsAuthorization(passwords: Record<Role, string>): string {
  const users = ROLES.map((role) => {
    const p = ROLE_PERMISSIONS[role];
    const list = (xs?: string[]) => `[${(xs ?? []).map((s) => JSON.stringify(s)).join(', ')}]`;
    const side = (s: { allow?: string[]; deny?: string[] }) => `{ allow: ${list(s.allow)}${s.deny ? `, deny: ${list(s.deny)}` : ''} }`;
    return `    { user: ${JSON.stringify(role)}, password: ${JSON.stringify(passwords[role])}, permissions: { publish: ${side(p.publish)}, subscribe: ${side(p.subscribe)} } }`;
  });
  return `authorization {\n  users: [\n${users.join('\n')}\n  ]\n}\n`;
}
