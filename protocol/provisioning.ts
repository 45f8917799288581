import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { PermissionViolationError } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { kvPrefix } from '@nats-io/kv/internal';

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

/** Every KV bucket of the cluster keeps one value per key. */
export const bucketOptions = (replicas: number) => ({ history: 1, replicas });

/** A stream or bucket is missing and this NATS user may not create it. */
export class NotProvisionedError extends Error {
  readonly code = 'not_provisioned';
  constructor(readonly what: string, options?: { cause?: unknown }) {
    super(`${what} does not exist, and this NATS user may not create it: create the cluster's streams and buckets as the admin with \`${PROVISION_COMMAND}\` (make up does it itself)`, options);
    this.name = 'NotProvisionedError';
  }
}

/** Whether NATS refused a publish or subscription for lack of permission (nats.js wraps it in a request error). */
export function isPermissionViolation(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof PermissionViolationError || /permissions violation/i.test(e.message)) return true;
  }
  return false;
}

export function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
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
  return createMissing(`KV bucket ${bucket}`, () => new Kvm(js).create(bucket, bucketOptions(replicas)));
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
