import type { Command, Outcome } from './commands.js';
import type { Reason } from './reasons.js';

/**
 * The shapes of the bid path's messages as every process sees them once
 * read (requests, results, log events and batches), whatever their bytes on
 * the wire (protocol/binary/, or msgpack: protocol/wire.ts).
 */

/** Text that travels with a command into its event, never into engine memory. */
export type CommandText = { title?: string; description?: string; imageUrl?: string; reason?: string };

/** A request to a shard's command subject: `{commands: [...]}` (msgpack). */
export type CommandRequest = { commands: unknown[] };

/** The answer to one command: its outcome, or an error that was never logged. */
export type CommandResult = (Outcome & { seq?: number }) | CommandError;
/** `retryAfterMs` comes with `overloaded`: the command was shed before it was decided. */
export type CommandError = { status: 'error'; code: Reason; message: string; retryAfterMs?: number };
/**
 * `queuedMs`: how long the request waited at the engine between its arrival
 * and the batch that decided it (the gateways' admission budget reads it).
 */
export type CommandReply = { results: CommandResult[]; queuedMs?: number };

/** One event of the log: the command as decided, its outcome, and any text. */
export type LogEvent = { seq: number; command: Command; outcome: Outcome; text?: CommandText };

/** One JetStream message of a shard's log. */
export type LogBatch = {
  v: 1;
  shard: number;
  /** Instance id of the engine that wrote it (fencing diagnostics, resync). */
  writer: string;
  /** Engine time of every event in the batch. */
  t: number;
  events: LogEvent[];
  /** Present on the fence a new primary appends when it takes the shard (no events). */
  leader?: { engineId: string; writer: string };
};
