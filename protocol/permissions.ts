import {
  adminSubjects,
  kvStream,
  AUDIT_CONSUMER,
  auditSubject,
  HEARTBEAT_SUBJECT,
  inboxPrefix,
  LEASE_BUCKET,
  NOTIFICATION_ACKS_BUCKET,
  NOTIFICATION_SUBJECTS,
  NOTIFICATIONS_STREAM,
  NOTIFIED_SUBJECTS,
  type Role,
  ROLES,
  STATUS_SUBJECT,
  streamName,
  subjects,
  USER_FLAGS_BUCKET,
  USER_FLAGS_SUBJECTS,
  USERS_BUCKET,
} from './names.js';
import { SHARDS_MAX } from './ids.js';

/**
 * The NATS users of a cluster and what each may publish and subscribe to:
 * every subject a role uses, and nothing more, built from the subject,
 * stream, bucket and consumer names the code uses. docs/operations.md shows
 * the table (test/docs.test.ts keeps it in step); test/security tests every
 * refusal. No service imports it, only the tools that configure a server
 * (provisioning, the test kit, `make up`).
 *
 * NATS permissions match whole subject tokens, so JetStream API subjects,
 * which carry a stream name, are listed once per shard: the table depends on
 * the cluster's shard count, fixed when the cluster is created. Consumer
 * names cannot be narrowed further: nats.js names an ordered consumer
 * `<prefix>_<serial>`, one token, so a name prefix is no subject prefix.
 *
 * Consumers are the one right no permission can narrow: whoever may create a
 * consumer may make it a push consumer delivering to any subject, and the
 * server delivers as itself, never checking the creator's publish
 * permissions (verified on 2.9.10: a push consumer on NOTIFICATIONS
 * delivering to `auction.log.0` appended to the shard log). So the gateway,
 * internet-facing, holds none: it follows the streams through what they
 * re-publish (JetStream RePublish) and reads gaps back by direct gets
 * (gateway/stream-follower.ts). The engine and the audit still create
 * consumers (a known limit, docs/operations.md).
 */

export type Permission = { allow: string[]; deny?: string[] };
export type Permissions = { publish: Permission; subscribe: Permission };

const API = '$JS.API';
/** nats.js keeps bucket B in stream KV_B, one subject per key under $KV.B. */
const kvSubjects = (bucket: string) => `$KV.${bucket}.>`;

/**
 * Reading a stream through ordered (pull) consumers: its info, consumers of
 * any name, pulls, and the consumers' info: nats.js asks it when a pull's
 * heartbeats are missed (a busy process, a slow server) before it pulls
 * again, and retries the question for as long as it fails, so without it
 * the consumer never pulled again (make bench-scale: standbys stuck for good,
 * the server logging "Publish Violation ... CONSUMER.INFO"). No deletes. Not
 * for the gateway.
 */
const orderedReads = (stream: string) => [
  `${API}.STREAM.INFO.${stream}`,
  `${API}.CONSUMER.CREATE.${stream}.*`,
  `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
  `${API}.CONSUMER.INFO.${stream}.*`,
];

/**
 * A KV bucket as a service uses it: its info (Kvm.create only reads it when
 * the bucket exists), direct gets by key (only the subject form, which names
 * the key's subject), and, when `writes`, puts, updates and deletes.
 */
const bucketAccess = (bucket: string, writes: boolean) => [
  `${API}.STREAM.INFO.${kvStream(bucket)}`,
  `${API}.DIRECT.GET.${kvStream(bucket)}.${kvSubjects(bucket)}`,
  ...(writes ? [kvSubjects(bucket)] : []),
];

/**
 * Watching a bucket (nats.js KV watch): a push consumer filtered on the
 * bucket's keys, created with the name in the subject, plus answers to its
 * flow-control messages ($JS.FC.<stream>.<consumer>.<token>).
 */
const bucketWatch = (bucket: string) => [
  `${API}.CONSUMER.CREATE.${kvStream(bucket)}.*.${kvSubjects(bucket)}`,
  `$JS.FC.${kvStream(bucket)}.>`,
];

/** Nobody but the audit (and the admin) may create or take over the audit's durable consumer on any stream. */
const auditConsumerGuard = [
  `${API}.CONSUMER.CREATE.*.${AUDIT_CONSUMER}`,
  `${API}.CONSUMER.CREATE.*.${AUDIT_CONSUMER}.>`,
];

/** Replies into the inboxes of the roles this one answers. */
const answers = (...roles: Role[]) => roles.map((role) => `${inboxPrefix(role)}.>`);
const ownInbox = (role: Role) => `${inboxPrefix(role)}.>`;

/**
 * NATS permissions per role for a cluster of `shardCount` shards.
 *
 * - admin: everything (operator actions, provisioning, repairs).
 * - engine: appends to the shard logs and follows them; holds leases.
 *   Answers the gateways and the admin.
 * - audit: follows the shard logs with its durable consumer (the only role
 *   that may create, delete or acknowledge it); writes notifications.
 *   Answers the gateways and the admin.
 * - gateway: sends commands and queries, follows the logs, the
 *   notifications and the disabled users without consumers (their
 *   re-published copies, direct gets, stream info), writes users and
 *   notification acknowledgements. Denied every consumer API subject.
 *   Answers only the admin.
 *
 * No role but the admin may create, update, delete or purge a stream, list
 * streams' configurations, or delete a consumer other than its own. Not
 * `allow_responses`: with it the server remembers the reply subject of every
 * message it delivers for two minutes and scans that map on every prune;
 * under load its CPU grew step by step until the engine stalled. The inbox
 * prefixes do that job without state in the server.
 */
export function rolePermissions(shardCount: number): Record<Role, Permissions> {
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > SHARDS_MAX)
    throw new Error(`shardCount must be 1..${SHARDS_MAX}, got ${shardCount}`);
  const shards = Array.from({ length: shardCount }, (_, shard) => shard);
  const perShard = (f: (shard: number) => string[]) => shards.flatMap(f);
  const jsCommon = [`${API}.INFO`]; // jetstreamManager() asks for the account's JetStream info
  return {
    admin: { publish: { allow: ['>'] }, subscribe: { allow: ['>'] } },
    engine: {
      publish: {
        allow: [
          ...jsCommon,
          ...perShard((s) => [subjects.log(s), ...orderedReads(streamName(s))]),
          HEARTBEAT_SUBJECT,
          ...bucketAccess(LEASE_BUCKET, true),
          ...bucketWatch(LEASE_BUCKET),
          ...answers('gateway', 'admin'),
        ],
        deny: auditConsumerGuard,
      },
      subscribe: {
        allow: [
          ...perShard((s) => [
            subjects.commands(s),
            subjects.control(s),
            subjects.nodeControl(s, '*'),
            adminSubjects.engine(s),
          ]),
          HEARTBEAT_SUBJECT,
          STATUS_SUBJECT,
          ownInbox('engine'),
        ],
      },
    },
    audit: {
      publish: {
        allow: [
          ...jsCommon,
          NOTIFICATION_SUBJECTS,
          `${API}.STREAM.INFO.${NOTIFICATIONS_STREAM}`,
          ...perShard((s) => {
            const stream = streamName(s);
            return [
              ...orderedReads(stream), // the durable is created under its name too, by the same subject form
              `${API}.CONSUMER.INFO.${stream}.${AUDIT_CONSUMER}`,
              `${API}.CONSUMER.DELETE.${stream}.${AUDIT_CONSUMER}`,
              `$JS.ACK.${stream}.${AUDIT_CONSUMER}.>`,
            ];
          }),
          ...answers('gateway', 'admin'),
        ],
      },
      subscribe: {
        allow: [...perShard((s) => [auditSubject(s), adminSubjects.audit(s)]), STATUS_SUBJECT, ownInbox('audit')],
      },
    },
    gateway: {
      publish: {
        allow: [
          ...jsCommon,
          // Each shard log: its info (the follower's start and checks), direct gets by sequence (gaps), and
          // the leader's own get for a sequence a replica behind said it lacks (gateway/stream-follower.ts).
          ...perShard((s) => [
            subjects.commands(s),
            subjects.control(s),
            auditSubject(s),
            `${API}.STREAM.INFO.${streamName(s)}`,
            `${API}.DIRECT.GET.${streamName(s)}`,
            `${API}.STREAM.MSG.GET.${streamName(s)}`,
          ]),
          // Discovering the shard streams, and whether an auction's shard exists at all (an id may name
          // a shard beyond the cluster's): names only, no configurations.
          `${API}.STREAM.NAMES`,
          `${API}.STREAM.INFO.${NOTIFICATIONS_STREAM}`,
          `${API}.DIRECT.GET.${NOTIFICATIONS_STREAM}`,
          `${API}.DIRECT.GET.${NOTIFICATIONS_STREAM}.${NOTIFICATION_SUBJECTS}`,
          `${API}.STREAM.MSG.GET.${NOTIFICATIONS_STREAM}`,
          ...bucketAccess(USERS_BUCKET, true),
          ...bucketAccess(NOTIFICATION_ACKS_BUCKET, true),
          ...bucketAccess(USER_FLAGS_BUCKET, false), // its info lists the keys (subjects filter); values by key
          ...answers('admin'),
        ],
        // No consumer of any kind (pull, push, ordered, durable), on any stream: see above.
        deny: [`${API}.CONSUMER.>`],
      },
      subscribe: {
        allow: [
          ...perShard((s) => [subjects.logged(s)]), // what the shard logs re-publish
          NOTIFIED_SUBJECTS, // what NOTIFICATIONS re-publishes
          USER_FLAGS_SUBJECTS, // what the disabled-users bucket re-publishes
          adminSubjects.gateway,
          STATUS_SUBJECT,
          ownInbox('gateway'),
        ],
      },
    },
  };
}

/** A nats-server `authorization` block giving each role its user, password and permissions. */
export function natsAuthorization(passwords: Record<Role, string>, shardCount: number): string {
  const permissions = rolePermissions(shardCount);
  const list = (xs: string[]) => `[${xs.map((s) => JSON.stringify(s)).join(', ')}]`;
  const side = (p: Permission) => `{ allow: ${list(p.allow)}${p.deny ? `, deny: ${list(p.deny)}` : ''} }`;
  const users = ROLES.map((role) => {
    const p = permissions[role];
    return `    { user: ${JSON.stringify(role)}, password: ${JSON.stringify(passwords[role])}, permissions: { publish: ${side(p.publish)}, subscribe: ${side(p.subscribe)} } }`;
  });
  return `authorization {\n  users: [\n${users.join('\n')}\n  ]\n}\n`;
}

/**
 * The permission table of docs/operations.md, rendered from `rolePermissions`
 * with every shard number shown as `<n>` (the subjects repeat per shard).
 * test/security/permissions-doc.test.ts checks that the doc shows exactly this.
 */
export function permissionsTable(): string {
  const permissions = rolePermissions(1);
  const general = (subject: string) => subject.replace(/(AUCTION_LOG_)\d+/g, '$1<n>').replace(/\.\d+(?=\.|$)/g, '.<n>');
  const cell = (subjectList: string[] | undefined) => {
    const unique = [...new Set((subjectList ?? []).map(general))];
    return unique.length === 0 ? '-' : unique.map((s) => `\`${s}\``).join('<br>');
  };
  const rows = ROLES.map((role) => {
    const p = permissions[role];
    return `| \`${role}\` | ${cell(p.publish.allow)} | ${cell(p.publish.deny)} | ${cell(p.subscribe.allow)} |`;
  });
  return ['| user | may publish | never (deny wins) | may subscribe |', '|---|---|---|---|', ...rows].join('\n');
}
