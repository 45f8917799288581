import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type Republish,
  type StreamInfo,
} from '@nats-io/jetstream';
import { isPermissionViolation, isStreamNotFound } from './nats-errors.js';
import { Kvm, type KV } from '@nats-io/kv';
import { kvPrefix } from '@nats-io/kv/internal';
import { USER_FLAGS_BUCKET, USER_FLAGS_REPUBLISH } from './names.js';

/**
 * How services open the streams and buckets of a cluster. The admin creates
 * them (`auctionctl cluster init`, ctl/provision.ts; `make up` and the test
 * kit do it for their own servers); services may only read and write them,
 * since their NATS users hold no right to create, change or delete streams
 * (protocol/permissions.ts). On a server without users a service still
 * creates what is missing, as before, so a bare nats-server keeps working.
 */

/** What an operator runs to create the streams and buckets. */
export const PROVISION_COMMAND = 'auctionctl cluster init --shard-count N';

/** Buckets whose stream re-publishes every change, for gateways that follow them without a consumer. */
const BUCKET_REPUBLISH: ReadonlyMap<string, Republish> = new Map([[USER_FLAGS_BUCKET, USER_FLAGS_REPUBLISH]]);

/**
 * A bucket's options: every KV bucket of the cluster keeps one value per key
 * and answers direct gets (nats.js's default on servers that have them);
 * some re-publish their changes.
 */
export const bucketOptions = (bucket: string, replicas: number) => {
  const republish = BUCKET_REPUBLISH.get(bucket);
  return { history: 1, replicas, allow_direct: true, ...(republish ? { republish } : {}) };
};

/** The settings followers without consumers need of a stream (gateway/stream-follower.ts). */
export type FollowSettings = { allow_direct: true; republish?: Republish };

/** The follow settings of a bucket's stream. */
export function bucketFollowSettings(bucket: string): FollowSettings {
  const { republish } = bucketOptions(bucket, 1);
  return republish ? { allow_direct: true, republish } : { allow_direct: true };
}

/** What provisioning did to a stream that existed already. */
export type StreamUpgrade = {
  /** Settings this run added (`allow_direct`, `republish`). */
  upgraded: string[];
  /** Settings the stream still lacks because the server refused to add them, and its reason. */
  lacking: { setting: string; reason: string }[];
};

const sameRepublish = (a: Republish | undefined, b: Republish) =>
  !!a && (a.src || '>') === (b.src || '>') && a.dest === b.dest && !!a.headers_only === !!b.headers_only;

/**
 * Gives an existing stream the settings followers need, by a stream update
 * (as the admin), keeping everything else. nats-server 2.9 refuses to change
 * a stream's RePublish once it is created ("stream configuration update can
 * not change RePublish"; later servers allow it): the stream then still gets
 * `allow_direct`, and `lacking` says that it has no republish. A gateway
 * still follows such a stream, by reading its last sequence every second and
 * its new messages by direct gets (gateway/stream-follower.ts), so its live
 * updates come up to a second late until the stream is recreated.
 */
export async function upgradeStream(
  jsm: JetStreamManager,
  info: StreamInfo,
  wanted: FollowSettings,
): Promise<StreamUpgrade> {
  const { name } = info.config;
  const needsDirect = !info.config.allow_direct;
  const needsRepublish = wanted.republish !== undefined && !sameRepublish(info.config.republish, wanted.republish);
  const result: StreamUpgrade = { upgraded: [], lacking: [] };
  if (needsRepublish) {
    try {
      await jsm.streams.update(name, { allow_direct: true, republish: wanted.republish });
      result.upgraded.push(...(needsDirect ? ['allow_direct'] : []), 'republish');
      return result;
    } catch (error) {
      if (!(error instanceof JetStreamApiError) || !/republish/i.test(error.message)) throw error;
      result.lacking.push({ setting: 'republish', reason: error.message });
    }
  }
  if (needsDirect) {
    await jsm.streams.update(name, { allow_direct: true });
    result.upgraded.push('allow_direct');
  }
  return result;
}

/** A stream or bucket is missing and this NATS user may not create it. */
export class NotProvisionedError extends Error {
  readonly code = 'not_provisioned';
  constructor(
    readonly what: string,
    options?: { cause?: unknown },
  ) {
    super(
      `${what} does not exist, and this NATS user may not create it: create the cluster's streams and buckets as the admin with \`${PROVISION_COMMAND}\` (make up does it itself)`,
      options,
    );
    this.name = 'NotProvisionedError';
  }
}

/**
 * Runs `create` for the missing `what` ("stream AUCTION_LOG_3"); a refusal
 * for lack of rights becomes a NotProvisionedError naming it and the
 * command that creates it, instead of a bare permissions violation.
 */
export async function createMissing<T>(what: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (error) {
    if (isPermissionViolation(error)) throw new NotProvisionedError(what, { cause: error });
    throw error;
  }
}

/**
 * Opens a KV bucket. `Kvm.create` only reads the stream's info when the
 * bucket exists (never updates it), and learns from it that the bucket
 * answers direct gets, which are what the roles may read (`Kvm.open` would
 * assume no direct gets and use STREAM.MSG.GET instead). It creates the
 * bucket only when it is missing, which a service may do on a server
 * without users; under a service user a missing bucket is a NotProvisionedError.
 */
export async function openBucket(js: JetStreamClient, bucket: string, replicas: number): Promise<KV> {
  return createMissing(`KV bucket ${bucket}`, () => new Kvm(js).create(bucket, bucketOptions(bucket, replicas)));
}

/** Whether the bucket's stream exists (for reporting what provisioning created). */
export async function bucketExists(jsm: JetStreamManager, bucket: string): Promise<boolean> {
  try {
    await jsm.streams.info(`${kvPrefix}${bucket}`);
    return true;
  } catch (error) {
    if (isStreamNotFound(error)) return false;
    throw error;
  }
}
