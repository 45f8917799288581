import { kvPrefix } from '@nats-io/kv/internal';

/**
 * Every name processes share on NATS: subjects, streams, KV buckets,
 * consumers and queue groups. A process finds another only through these, so
 * they live in one place; protocol/permissions.ts builds each NATS user's
 * rights from them, and docs/operations.md lists them.
 */

/** The NATS users of a cluster (one per kind of process) and the admin. */
export type Role = 'admin' | 'engine' | 'audit' | 'gateway';
export const ROLES: readonly Role[] = ['admin', 'engine', 'audit', 'gateway'];

/**
 * Replies to a role's requests (and its JetStream deliveries) arrive under
 * this prefix. Each role may subscribe only to its own, and publish only
 * into the prefixes of the roles it answers (protocol/permissions.ts), so no
 * credential can read or forge the replies meant for another role.
 */
export const inboxPrefix = (role: Role) => `_INBOX_${role}`;

/** Subjects of a shard's commands, queries and log. */
export const subjects = {
  /** Commands for a shard, request/reply, served by its primary engine. */
  commands: (shard: number) => `auction.cmd.${shard}`,
  /** Queries for a shard, answered by its primary (state, hash, status): `ControlRequest`. */
  control: (shard: number) => `auction.ctl.${shard}`,
  /** The same queries for one engine's copy of a shard, primary or replica. */
  nodeControl: (shard: number, engineId: string) => `auction.node.${engineId}.${shard}`,
  /** The shard's log: one JetStream message per batch of events. */
  log: (shard: number) => `auction.log.${shard}`,
  logWildcard: 'auction.log.*',
  /**
   * The shard's log as its stream re-publishes it (JetStream RePublish: every
   * stored batch, never a rejected append, as a core message with the stream
   * sequence in its headers). Gateways follow the logs here, without consumers.
   */
  logged: (shard: number) => `auction.logged.${shard}`,
  loggedWildcard: 'auction.logged.*',
};

const SHARD_STREAM_PREFIX = 'AUCTION_LOG_';
/** The JetStream stream holding a shard's log. */
export const streamName = (shard: number) => `${SHARD_STREAM_PREFIX}${shard}`;
/** The shard whose log a stream holds, or null for any other stream. */
export function shardOfStream(name: string): number | null {
  const match = /^AUCTION_LOG_(0|[1-9][0-9]{0,5})$/.exec(name);
  return match ? Number(match[1]) : null;
}

/** Read-model queries of a shard (`AuditQuery`), answered by its audit process. */
export const auditSubject = (shard: number) => `auction.audit.${shard}`;
/** The audit's durable consumer on each shard stream. */
export const AUDIT_CONSUMER = 'audit';

/** Operator (admin) actions, which only the admin NATS user may publish. */
export const adminSubjects = {
  /** close/cancel commands and the ops snapshot, step-down (`EngineAdminRequest`): served by a shard's primary. */
  engine: (shard: number) => `auction.admin.engine.${shard}`,
  /** `verify`, `events` (`AuditAdminRequest`): served by the audit process of a shard. */
  audit: (shard: number) => `auction.admin.audit.${shard}`,
  /** `mint` (`GatewayAdminRequest`): served by any one gateway (queue group GATEWAY_QUEUE). */
  gateway: 'auction.admin.gateway',
  all: 'auction.admin.>',
};
/** The queue group of the gateways' admin subscription: one gateway answers each request. */
export const GATEWAY_QUEUE = 'gateways';

/** Every process answers a request here with a `ProcessStatus` (one reply each). */
export const STATUS_SUBJECT = 'auction.status';
/** Engines announce themselves and their shards here (placement mode). */
export const HEARTBEAT_SUBJECT = 'auction.engines.heartbeat';

/** Shard leadership: key `shard.<n>` -> the holder's `LeaseValue`. */
export const LEASE_BUCKET = 'auction_leases';
/** The JetStream stream behind a KV bucket (nats.js names it). */
export const kvStream = (bucket: string) => `${kvPrefix}${bucket}`;
/** Accounts: `user.<name>` -> the user, `id.<userId>` -> the name, and the id counter. */
export const USERS_BUCKET = 'auction_users';
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

/**
 * Personal notifications live in one JetStream stream, one subject per user
 * (protocol/notifications.ts).
 */
export const NOTIFICATIONS_STREAM = 'NOTIFICATIONS';
export const notificationSubject = (userId: number) => `notify.${userId}`;
export const NOTIFICATION_SUBJECTS = 'notify.*';
/**
 * The stream re-publishes every stored notification (JetStream RePublish),
 * `notify.<userId>` as `notified.<userId>` with its stream sequence in the
 * headers: gateways push them live from there, without a consumer.
 * nats-server 2.9 takes the `{{wildcard(1)}}` form of the destination, not `notified.*`.
 */
export const NOTIFICATIONS_REPUBLISH = { src: NOTIFICATION_SUBJECTS, dest: 'notified.{{wildcard(1)}}' };
export const NOTIFIED_SUBJECTS = 'notified.*';
/** KV bucket holding each user's acknowledged position (`u<userId>` -> upTo). */
export const NOTIFICATION_ACKS_BUCKET = 'notification_acks';

/** Every KV bucket of a cluster, which provisioning creates. */
export const CLUSTER_BUCKETS = [LEASE_BUCKET, USERS_BUCKET, NOTIFICATION_ACKS_BUCKET, USER_FLAGS_BUCKET] as const;
