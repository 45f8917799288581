import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { kvPrefix } from '@nats-io/kv/internal';
import {
  ensureNotificationStream,
  NOTIFICATIONS_REPUBLISH,
  NOTIFICATIONS_STREAM,
  SHARDS_MAX,
  streamName,
} from '../protocol/index.js';
import { CLUSTER_BUCKETS } from '../protocol/names.js';
import {
  bucketExists,
  bucketFollowSettings,
  openBucket,
  upgradeStream,
  type StreamUpgrade,
} from '../protocol/provisioning.js';
import {
  ensureShardStream,
  SHARD_DEFAULTS,
  upgradeShardStream,
  type ShardStreamConfig,
} from '../protocol/shard-stream.js';

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
  shards: ({
    shard: number;
    stream: string;
    created: boolean;
    config: ShardStreamConfig;
    lastStreamSeq: number;
  } & StreamUpgrade)[];
  streams: ({ name: string; created: boolean } & StreamUpgrade)[];
  buckets: ({ name: string; created: boolean } & StreamUpgrade)[];
};

const unchanged = (): StreamUpgrade => ({ upgraded: [], lacking: [] });

/** The KV buckets of a cluster: leases (engines), users and notification acks (gateways), disabled users (admin). */

export async function provisionCluster(nc: NatsConnection, options: ProvisionOptions): Promise<ProvisionReport> {
  const { shardCount } = options;
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > SHARDS_MAX)
    throw new Error(`the shard count is 1..${SHARDS_MAX}, got ${shardCount}`);
  // The engine's own defaults, from their one definition: an engine started without flags records the same.
  const replicas = options.replicas ?? SHARD_DEFAULTS.streamReplicas;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const shards: ProvisionReport['shards'] = [];
  for (let shard = 0; shard < shardCount; shard++) {
    const wanted = {
      shard,
      auctionsMax: options.auctionsMax ?? SHARD_DEFAULTS.auctionsMax,
      idempotencyEntriesMax: options.idempotencyEntriesMax ?? SHARD_DEFAULTS.idempotencyEntriesMax,
    };
    const { config, lastStreamSeq, created } = await ensureShardStream(jsm, wanted, replicas);
    shards.push({
      shard,
      stream: streamName(shard),
      created,
      config,
      lastStreamSeq,
      ...(created ? unchanged() : await upgradeShardStream(jsm, shard)),
    });
  }
  const notificationsCreated = await ensureNotificationStream(jsm, replicas);
  const streams = [
    {
      name: NOTIFICATIONS_STREAM,
      created: notificationsCreated,
      ...(notificationsCreated
        ? unchanged()
        : await upgradeStream(jsm, await jsm.streams.info(NOTIFICATIONS_STREAM), {
            allow_direct: true,
            republish: NOTIFICATIONS_REPUBLISH,
          })),
    },
  ];
  const buckets: ProvisionReport['buckets'] = [];
  for (const name of CLUSTER_BUCKETS) {
    const existed = await bucketExists(jsm, name);
    if (!existed) await openBucket(js, name, replicas);
    const upgrade = existed
      ? await upgradeStream(jsm, await jsm.streams.info(`${kvPrefix}${name}`), bucketFollowSettings(name))
      : unchanged();
    buckets.push({ name, created: !existed, ...upgrade });
  }
  return { shards, streams, buckets };
}
