import { JetStreamApiError, RetentionPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { createMissing } from './provisioning.js';
import { isStreamNotFound } from './nats-errors.js';
import { NOTIFICATION_SUBJECTS, NOTIFICATIONS_REPUBLISH, NOTIFICATIONS_STREAM } from './names.js';

/**
 * Personal notifications (outbid, won, lost, auction_ended) live in one
 * JetStream stream, one subject per user. The audit writes them (it sees
 * every event exactly once in effect and knows each auction's seller and
 * bidders); gateways push them live and read a user's unacknowledged ones
 * after a reconnect. The stream sequence is the notification id: one total
 * order, so `ack {upTo}` means "everything up to here". See docs/gateway.md.
 */
export const NOTIFICATION_LIMITS = {
  /** Kept per user at most; the oldest go first. */
  perUserMax: 1_000,
  /** Kept this long at most, acknowledged or not. */
  maxAgeMs: 30 * 24 * 3_600_000,
  /** Returned per read at most. */
  pageMax: 100,
};

export type NotificationKind = 'outbid' | 'won' | 'lost' | 'auction_ended';

/** What a notification message carries (the user is its subject; the id its stream sequence). */
export type NotificationBody = {
  kind: NotificationKind;
  auctionId: number;
  /** The auction's visible price when it happened. */
  price: number;
  /** For auction_ended / lost / won: how the auction ended. */
  status?: 'closed' | 'cancelled';
  winnerId?: number;
  /** The event that caused it (shard sequence) and its time. */
  seq: number;
  at: number;
  /** Unique per (event, kind, user): a republished copy carries the same key. */
  key: string;
};

const STREAM_NAME_IN_USE = 10058;

/** The NOTIFICATIONS stream's configuration: what provisioning and a service on a server without users create. */
export const notificationStreamConfig = (replicas: number) => ({
  name: NOTIFICATIONS_STREAM,
  subjects: [NOTIFICATION_SUBJECTS],
  retention: RetentionPolicy.Limits,
  max_msgs_per_subject: NOTIFICATION_LIMITS.perUserMax,
  max_age: NOTIFICATION_LIMITS.maxAgeMs * 1_000_000,
  num_replicas: replicas,
  allow_direct: true,
  republish: NOTIFICATIONS_REPUBLISH,
  duplicate_window: 120_000_000_000, // 2 min: a notification the audit writes again after a crash is dropped by its key
});

/**
 * Opens the stream, creating it if it is missing and this NATS user may (the
 * admin's provisioning, ctl/provision.ts; any writer or reader on a server
 * without users); true when this call created it. Idempotent.
 */
export async function ensureNotificationStream(jsm: JetStreamManager, replicas = 1): Promise<boolean> {
  try {
    await jsm.streams.info(NOTIFICATIONS_STREAM);
    return false;
  } catch (error) {
    if (!isStreamNotFound(error)) throw error;
  }
  try {
    await createMissing(`stream ${NOTIFICATIONS_STREAM}`, () => jsm.streams.add(notificationStreamConfig(replicas)));
    return true;
  } catch (error) {
    // Another process created it first (10058: stream name already in use).
    if (!(error instanceof JetStreamApiError) || error.code !== STREAM_NAME_IN_USE) throw error;
    return false;
  }
}
