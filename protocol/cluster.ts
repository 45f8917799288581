import { readFileSync } from 'node:fs';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { encode } from './wire.js';
import { inboxPrefix, STATUS_SUBJECT, type Role } from './names.js';

/**
 * What the processes of a cluster share beyond commands and the log: the
 * status every process reports, and the NATS credentials and inbox prefix
 * each process connects with. The names are in protocol/names.ts, the NATS
 * permissions of each role in protocol/permissions.ts; docs/operations.md
 * explains the set-up.
 */

/** A shard's lease (bucket LEASE_BUCKET, key `shard.<n>`): who holds it, as which writer, renewed when by its own clock. */
export type LeaseValue = {
  engineId: string;
  writer: string;
  renewedAt: number;
  /**
   * The writer's last stream message known durable when it wrote this: a
   * copy taking over whose log ends before it knows the log lost messages
   * (absent in values written before it was added).
   */
  streamSeq?: number;
};

/**
 * The roles of a copy of a shard (shard/roles.ts has their edges; drawn in
 * docs/replica.md): `ShardCopyStatus.status`.
 */
export const COPY_ROLES = [
  'starting',
  'following',
  'taking-over',
  'serving',
  'stepping-down',
  'resyncing',
  'deposed',
  'stopped',
] as const;
export type CopyRole = (typeof COPY_ROLES)[number];

/** A copy's change of role, as the engine logs it (a `role` record; what tests and tools wait for). */
export type RoleTransition = { shard: number; from: CopyRole; to: CopyRole; cause: string; at: number };

export type ShardCopyStatus = {
  shard: number;
  status: CopyRole;
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

export type ProcessStatus = ProcessHealth &
  (
    | {
        kind: 'engine';
        id: string;
        role: 'primary' | 'replica';
        pid: number;
        startedAt: number;
        shards: ShardCopyStatus[];
        /** Placement mode: the cluster's shard count; null for a static shard list. */ shardCount: number | null;
      }
    | {
        kind: 'audit';
        id: string;
        pid: number;
        startedAt: number;
        shards: { shard: number; streamSeq: number; eventSeq: number; eventCount: number; lagMs: number }[];
      }
    | {
        kind: 'gateway';
        id: string;
        pid: number;
        startedAt: number;
        listen: string;
        connections: number;
        subscriptions: number;
      }
  );

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
    if (typeof parsed?.user !== 'string' || typeof parsed.password !== 'string')
      throw new Error(`${env.NATS_CREDENTIALS}: expected {"user": "...", "password": "..."}`);
    return { user: parsed.user, pass: parsed.password };
  }
  return {};
}

/**
 * A connection attempt that gets no greeting within CONNECT_TIMEOUT_MS is
 * given up for the next node (nats.js waits 20 s: a process reconnecting
 * from a paused node could pick it again and hang there). A server gone
 * silent on an open connection is found by service/nats-watchdog.ts, not by
 * nats.js's PINGs (see there why).
 */
export const CONNECT_TIMEOUT_MS = 2_000;

/**
 * nats.js `connect` options of a process of `role`: its credentials (see
 * `natsCredentials`), its role's inbox prefix and the connect timeout.
 * Without credentials (a server without users) the prefix is harmless and
 * the same code runs.
 */
export function roleConnectOptions(
  role: Role,
  env: NodeJS.ProcessEnv = process.env,
): { inboxPrefix: string; timeout: number; user?: string; pass?: string } {
  return {
    inboxPrefix: inboxPrefix(role),
    timeout: CONNECT_TIMEOUT_MS,
    ...natsCredentials(env),
  };
}
