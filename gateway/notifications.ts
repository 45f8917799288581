import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  decode,
  ensureNotificationStream,
  NOTIFICATION_LIMITS,
  NOTIFICATIONS_REPUBLISH,
  NOTIFICATIONS_STREAM,
  notificationSubject,
  type NotificationBody,
} from '../protocol/index.js';
import { isWrongLastSequence } from '../protocol/nats-errors.js';
import type { Notification } from '../protocol/public.js';
import { ApiError } from './errors.js';
import { notificationOf } from './public-shapes.js';
import { StreamFollower } from './stream-follower.js';

const ACK_ATTEMPTS_MAX = 10;

/**
 * At-least-once personal notifications. The audit writes them to the
 * NOTIFICATIONS stream (one subject per user); this class pushes new ones to
 * connected users as they are stored (the copies the stream re-publishes to
 * `notified.<userId>`, followed without a consumer by a StreamFollower: in
 * stream order, gaps read back by direct gets), reads a user's unacknowledged ones
 * (after a reconnect, or `GET /v1/me/notifications`) and records
 * acknowledgements (`upTo`, a stream sequence) in a KV bucket shared by all
 * gateways. Unacknowledged notifications are therefore delivered again on
 * every reconnect, from any gateway, until acknowledged.
 */
export class NotificationCenter {
  private follower: StreamFollower | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly acks: KV,
    private readonly logger: Logger,
  ) {}

  /**
   * Follows the stream from now on; `deliver` gets every new notification
   * once, in id order. Notifications skipped by a reset (a gap past the
   * follower's bound) are not pushed; they stay unacknowledged, so the user
   * gets them on the next reconnect or read.
   */
  async start(deliver: (userId: number, notification: Notification) => void): Promise<void> {
    await ensureNotificationStream(this.jsm);
    const follower = new StreamFollower({
      nc: this.nc,
      jsm: this.jsm,
      stream: NOTIFICATIONS_STREAM,
      republish: NOTIFICATIONS_REPUBLISH,
      logger: this.logger,
      onMessage: (message) => {
        const userId = Number(message.subject.slice(message.subject.indexOf('.') + 1));
        deliver(userId, toNotification(message.seq, message.data));
      },
      onReset: (skipped) =>
        this.logger.warn(
          skipped,
          "notifications skipped live: they are delivered at the users' next reconnect or read",
        ),
    });
    await follower.start();
    this.follower = follower;
  }

  stop(): void {
    this.follower?.stop();
  }

  /** A user's unacknowledged notifications with ids above `after`, oldest first (a page at most). */
  async unacknowledged(userId: number, after = 0): Promise<Notification[]> {
    const acked = await this.ackedUpTo(userId);
    const subject = notificationSubject(userId);
    const found: Notification[] = [];
    let next = Math.max(after, acked) + 1;
    try {
      while (found.length < NOTIFICATION_LIMITS.pageMax) {
        const message = await this.jsm.direct.getMessage(NOTIFICATIONS_STREAM, { seq: next, next_by_subj: subject });
        if (!message) break;
        found.push(toNotification(message.seq, message.data));
        next = message.seq + 1;
      }
    } catch (error) {
      throw new ApiError('unavailable', 'notifications could not be read', { cause: error });
    }
    return found;
  }

  /**
   * Everything up to `upTo` is acknowledged (never moves backwards; CAS
   * against other gateways). `upTo` is clamped to the user's newest
   * notification: acknowledging ids that do not exist yet would silence
   * every future notification of that user for good.
   */
  async acknowledge(userId: number, upTo: number): Promise<void> {
    const key = `u${userId}`;
    const newest = await this.newestId(userId);
    upTo = Math.min(upTo, newest);
    for (let attempt = 0; attempt < ACK_ATTEMPTS_MAX; attempt++) {
      try {
        const entry = await this.acks.get(key);
        const current = entry && entry.operation === 'PUT' ? Number(entry.string()) : 0;
        if (current >= upTo) return;
        if (entry) await this.acks.update(key, String(upTo), entry.revision);
        else await this.acks.create(key, String(upTo));
        return;
      } catch (error) {
        if (isWrongLastSequence(error)) continue; // another gateway acknowledged meanwhile: read again
        throw new ApiError('unavailable', 'the acknowledgement was not stored', { cause: error });
      }
    }
    throw new ApiError('unavailable', 'the acknowledgement kept conflicting; retry');
  }

  /** The id of the user's newest notification (0: none). */
  private async newestId(userId: number): Promise<number> {
    try {
      const message = await this.jsm.direct.getMessage(NOTIFICATIONS_STREAM, {
        last_by_subj: notificationSubject(userId),
      });
      return message?.seq ?? 0;
    } catch (error) {
      throw new ApiError('unavailable', 'notifications could not be read', { cause: error });
    }
  }

  async ackedUpTo(userId: number): Promise<number> {
    try {
      const entry = await this.acks.get(`u${userId}`);
      return entry && entry.operation === 'PUT' ? Number(entry.string()) : 0;
    } catch (error) {
      throw new ApiError('unavailable', 'notifications could not be read', { cause: error });
    }
  }
}

function toNotification(id: number, data: Uint8Array): Notification {
  return notificationOf(id, decode(data) as NotificationBody);
}
