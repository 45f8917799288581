import type { Msg } from '@nats-io/transport-node';
import { answerError } from '../protocol/operations.js';
import { commandError } from '../protocol/wire.js';
import { QueryError } from './queries.js';
import { ReadsFull } from './read-pool.js';

/**
 * The answer to a query that failed, wherever it ran (the writing thread or
 * a read worker): a query to fix is the asker's business (`invalid_request`
 * with its message), full read workers are `overloaded` (retry later), and
 * anything else (SQLite's text) goes to `logFailure`, the asker hearing only
 * `unavailable`.
 */
export function answerQueryFailure(msg: Msg, error: unknown, logFailure: (error: unknown) => void): void {
  if (error instanceof QueryError) answerError(msg, commandError('invalid_request', error.message));
  else if (error instanceof ReadsFull) answerError(msg, commandError('overloaded', error.message));
  else {
    logFailure(error);
    answerError(msg, commandError('unavailable', 'the query failed'));
  }
}

/**
 * Whether a decoded query is `position`: the writing thread answers it (its
 * own state) and the read workers, on the same subject, leave it alone.
 */
export const isPositionQuery = (raw: unknown) => (raw as { op?: unknown } | undefined)?.op === 'position';
