import { commandError, parseCommand, type CommandReply, type CommandResult } from '../protocol/index.js';
import { answer as answerOperation } from '../protocol/operations.js';
import type { BusRequest } from '../shard/ports.js';
import { isBinaryBatch } from '../protocol/binary/header.js';
import { encodeResultBatch } from '../protocol/binary/command-format.js';

export type Parsed = ReturnType<typeof parseCommand>;

/** A request being decided: answered once every event it depends on is durable. */
export type PendingRequest = {
  msg: BusRequest;
  parsed: Parsed[];
  results: CommandResult[];
  /** A read answered with this body instead of `results` (the `states` control op). */
  body?: unknown;
  /** When it arrived (engine clock), and how long it then waited for its batch. */
  arrivedAt: number;
  queuedMs?: number;
};

/**
 * Answers a request that has a reply subject in the format it came in: a
 * binary commands batch gets a binary results batch (the body is then
 * `{results, error?}`), anything else msgpack (protocol/operations.ts `answer`).
 */
export function reply(msg: BusRequest, body: unknown): void {
  if (!isBinaryBatch(msg.data)) answerOperation(msg, body);
  else if (msg.reply) msg.respond(encodeResultBatch(body as CommandReply));
}

export function answer(request: PendingRequest): void {
  reply(request.msg, request.body ?? { results: request.results, queuedMs: request.queuedMs });
}

/** The request's decisions are of unknown outcome (their append failed or the copy lost the shard): a safe retry. */
export function answerUnavailable(request: PendingRequest, message: string): void {
  if (request.body) {
    reply(request.msg, { error: commandError('unavailable', message) });
    return;
  }
  reply(request.msg, {
    results: request.results.map((r, i) =>
      // Malformed commands stay errors; every decided one is of unknown outcome.
      'status' in request.parsed[i] ? r : commandError('unavailable', message),
    ),
  });
}

/** A request never decided: every command `unavailable`. */
export function answerUndecided(request: PendingRequest, message: string): void {
  reply(request.msg, { results: request.parsed.map(() => commandError('unavailable', message)) });
}
