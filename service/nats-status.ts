import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';

/**
 * Logs what happens to a process's NATS connection: a server found silent
 * by nats.js's own PINGs, a disconnect, a reconnect and to which node (the
 * watchdog, nats-watchdog.ts, logs the silences it finds). Without it a process that moved between nodes, or lost its
 * replies with a connection, left no trace (the chaos runs read these).
 */
export function logConnectionStatus(nc: NatsConnection, logger: Logger): void {
  void (async () => {
    for await (const status of nc.status() as AsyncIterable<{ type: string; server?: string }>) {
      if (status.type === 'staleConnection') logger.warn('NATS server silent (PINGs unanswered): leaving it');
      else if (status.type === 'disconnect') logger.warn({ server: status.server }, 'NATS disconnected');
      else if (status.type === 'reconnect') logger.info({ server: status.server }, 'NATS reconnected');
    }
  })().catch((error: unknown) => logger.warn({ err: error }, 'NATS status stream ended'));
}
