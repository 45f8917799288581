import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';

/** How often the watchdog looks, and how long a server may send nothing at all, PINGed, before it is left. */
export const WATCH_EVERY_MS = 250;
export const SILENT_MS = 1_500;

/**
 * Leaves a NATS server that went silent but keeps the connection open (a
 * paused or stalled node; a killed one closes it and nats.js moves on at
 * once) for another node of the connection's list.
 *
 * Silent means nothing at all came from it for SILENT_MS although it was
 * PINGed (a flush) whenever it had been quiet for WATCH_EVERY_MS. Any
 * message read counts, and the PONG: nats.js's own PINGs count only PONGs,
 * which the server queues behind everything else it owes this client, so a
 * busy process reading a backlog looked dead. With 500 ms PINGs and two
 * unanswered, a saturated gateway left a healthy server twice in one `make
 * bench` and lost every request in flight with the connection. And a tick
 * that runs late (this process's own loop was busy, and what arrived
 * meanwhile is not read yet: the poll phase comes after the timers) judges
 * nothing. Measured on a 2-node cluster with one node stopped: on the other
 * node about 2 s after the stop (test/protocol/silent-server.test.ts).
 */
export function watchForSilentServer(
  nc: NatsConnection,
  logger: Logger,
  now: () => number = () => performance.now(),
): () => void {
  let bytes = nc.stats().inBytes;
  let heardAt = now();
  let due = heardAt + WATCH_EVERY_MS;
  /**
   * When the PING in flight was sent (null: none). One older than SILENT_MS
   * is given up: a flush sent just before a reconnect may never settle, and
   * waiting on it kept the watchdog from PINGing again, so a quiet
   * connection looked silent on every server (make chaos SEED=408: a
   * restarted gateway left a healthy node every 1.5-3 s once bidding
   * stopped, and watchers missed the auctions' final states meanwhile).
   */
  let pingSentAt: number | null = null;
  const timer = setInterval(() => {
    if (nc.isClosed()) {
      clearInterval(timer);
      return;
    }
    const t = now();
    const late = t - due > WATCH_EVERY_MS;
    due = t + WATCH_EVERY_MS;
    const read = nc.stats().inBytes;
    if (read !== bytes || late) {
      bytes = read;
      heardAt = t;
      return;
    }
    if (t - heardAt >= SILENT_MS) {
      logger.warn({ server: nc.getServer(), silentMs: Math.round(t - heardAt) }, 'NATS server silent: leaving it');
      heardAt = t;
      pingSentAt = null;
      void nc.reconnect().catch(() => undefined);
      return;
    }
    if (pingSentAt === null || t - pingSentAt >= SILENT_MS) {
      const sentAt = t;
      pingSentAt = sentAt;
      void nc
        .flush()
        .then(() => {
          // The PONG: nats.js counts no protocol bytes in inBytes, so on a connection quiet of messages
          // (an idle engine's, whose lease renewals have a connection of their own) this is all it hears.
          heardAt = Math.max(heardAt, now());
        })
        .catch(() => undefined)
        .finally(() => {
          if (pingSentAt === sentAt) pingSentAt = null;
        });
    }
  }, WATCH_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
