import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { kvPrefix } from '@nats-io/kv/internal';
import { ensureNotificationStream, NOTIFICATION_ACKS_BUCKET, NOTIFICATIONS_REPUBLISH, NOTIFICATIONS_STREAM, SHARDS_MAX } from '../protocol/index.js';
import { USER_FLAGS_BUCKET } from '../protocol/cluster.js';
import { bucketExists, bucketFollowSettings, openBucket, upgradeStream, type StreamUpgrade } from '../protocol/provisioning.js';
import { loadConfig } from '../engine/config.js';
import { ShardLog } from '../engine/log.js';
import type { ShardStreamConfig } from '../shard/ports.js';
import { LEASE_BUCKET } from '../replica/lease.js';
import { USERS_BUCKET } from '../gateway/auth.js';

/**
 * Creates every stream and bucket a cluster needs, as the admin: services
 * run as NATS users that may not create, change or delete streams
 * (protocol/permissions.ts), so they only open what this made. Run by
 * `auctionctl cluster init`, by `make up` and by the test kit for a server
 * with users. Idempotent: what exists is kept as it is (a shard stream keeps
 * the configuration it records, which its engines adopt), except that a
 * stream or bucket made before gateways followed streams without consumers
 * is upgraded with what they need (direct gets, RePublish; see
 * `upgradeStream` for what nats-server 2.9 refuses), and the report says so.
 */

export type ProvisionOptions = {
  shardCount: number;
  /** JetStream replicas of every stream (3 in production); the engine's default otherwise. */
  replicas?: number;
  /** Capacities recorded in each new shard stream; the engine's defaults (engine/config.ts) otherwise. */
  auctionsMax?: number;
  idempotencyEntriesMax?: number;
};

/** `upgraded`/`lacking`: what an existing stream was given, and what the server refused it (StreamUpgrade). */
export type ProvisionReport = {
  shards: ({ shard: number; stream: string; created: boolean; config: ShardStreamConfig; lastStreamSeq: number } & StreamUpgrade)[];
  streams: ({ name: string; created: boolean } & StreamUpgrade)[];
  buckets: ({ name: string; created: boolean } & StreamUpgrade)[];
};

const unchanged = (): StreamUpgrade => ({ upgraded: [], lacking: [] });

/** The KV buckets of a cluster: leases (engines), users and notification acks (gateways), disabled users (admin). */
export const CLUSTER_BUCKETS = [LEASE_BUCKET, USERS_BUCKET, NOTIFICATION_ACKS_BUCKET, USER_FLAGS_BUCKET] as const;

export async function provisionCluster(nc: NatsConnection, options: ProvisionOptions): Promise<ProvisionReport> {
  const { shardCount } = options;
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > SHARDS_MAX) throw new Error(`the shard count is 1..${SHARDS_MAX}, got ${shardCount}`);
  // The engine's own defaults, from its one definition: an engine started without flags records the same.
  const defaults = loadConfig([], {});
  const replicas = options.replicas ?? defaults.streamReplicas;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const shards: ProvisionReport['shards'] = [];
  for (let shard = 0; shard < shardCount; shard++) {
    const log = new ShardLog(js, jsm, shard);
    const wanted = { shard, auctionsMax: options.auctionsMax ?? defaults.auctionsMax, idempotencyEntriesMax: options.idempotencyEntriesMax ?? defaults.idempotencyEntriesMax };
    const { config, lastStreamSeq, created } = await log.ensure(wanted, replicas);
    shards.push({ shard, stream: log.stream, created, config, lastStreamSeq, ...(created ? unchanged() : await log.upgrade()) });
  }
  const notificationsCreated = await ensureNotificationStream(jsm, replicas);
  const streams = [{
    name: NOTIFICATIONS_STREAM,
    created: notificationsCreated,
    ...(notificationsCreated ? unchanged() : await upgradeStream(jsm, await jsm.streams.info(NOTIFICATIONS_STREAM), { allow_direct: true, republish: NOTIFICATIONS_REPUBLISH })),
  }];
  const buckets: ProvisionReport['buckets'] = [];
  for (const name of CLUSTER_BUCKETS) {
    const existed = await bucketExists(jsm, name);
    if (!existed) await openBucket(js, name, replicas);
    const upgrade = existed ? await upgradeStream(jsm, await jsm.streams.info(`${kvPrefix}${name}`), bucketFollowSettings(name)) : unchanged();
    buckets.push({ name, created: !existed, ...upgrade });
  }
  return { shards, streams, buckets };
}
