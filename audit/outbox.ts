import type { Database, Statement } from 'better-sqlite3';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { encode, notificationSubject, type NotificationBody } from '../protocol/index.js';
import { JetStreamPublisher } from '../protocol/jetstream-publisher.js';

/** Rows published per round at most (one round's publishes are pipelined). */
const OUTBOX_ROUND_MAX = 256;
const RETRY_MS = 500;
/** A publish unanswered this long is retried with the rest of its round (the msg id drops a duplicate). */
const PUBLISH_TIMEOUT_MS = 5_000;

/**
 * Publishes the outbox rows the projection wrote, in order, to the
 * NOTIFICATIONS stream and deletes them once acknowledged. Each publish
 * carries the notification's key as its msg id, so a republish after a
 * crash (within the stream's duplicate window) is dropped by JetStream.
 * Publishes go through one reply inbox (protocol/jetstream-publisher.ts).
 */
export class OutboxPublisher {
  private readonly next: Statement;
  private readonly done: Statement;
  private draining = false;
  private again = false;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  private readonly publisher: JetStreamPublisher;
  published = 0;

  constructor(
    db: Database,
    nc: NatsConnection,
    private readonly logger: Logger,
  ) {
    this.publisher = new JetStreamPublisher(nc);
    this.next = db.prepare('SELECT id, user_id AS userId, body FROM outbox ORDER BY id LIMIT ?');
    this.done = db.prepare('DELETE FROM outbox WHERE id <= ?');
  }

  /** Something was committed: publish what is waiting (one drain at a time). */
  kick(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = true;
    void this.drain().finally(() => {
      this.draining = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      const rows = this.next.all(OUTBOX_ROUND_MAX) as { id: number; userId: number; body: string }[];
      if (rows.length === 0) return;
      try {
        await Promise.all(
          rows.map((row) => {
            const body = JSON.parse(row.body) as NotificationBody;
            return this.publisher.publish(notificationSubject(row.userId), encode(body), {
              msgID: body.key,
              timeoutMs: PUBLISH_TIMEOUT_MS,
            });
          }),
        );
      } catch (error) {
        this.logger.warn({ err: error }, 'publishing notifications failed; retrying');
        this.retry = setTimeout(() => this.kick(), RETRY_MS);
        return;
      }
      if (this.stopped) return;
      this.done.run(rows[rows.length - 1].id);
      this.published += rows.length;
    }
  }
}
