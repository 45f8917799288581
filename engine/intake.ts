import { reply, type Parsed } from './answers.js';
import { commandError, decode, parseCommand, WIRE_LIMITS } from '../protocol/index.js';
import {
  decodeRequest,
  engineAdminParsers,
  parseOperation,
  type EngineAdminOperations,
  type RequestOf,
} from '../protocol/operations.js';
import type { BusRequest } from '../shard/ports.js';
import { isBinaryBatch } from '../protocol/binary/header.js';
import { decodeCommandBatch } from '../protocol/binary/command-format.js';

/**
 * The commands of a request, or null once a malformed request has been
 * answered: a binary commands batch (protocol/binary/command-format.ts, what
 * gateways send), or msgpack `{commands: [...]}` (operators, older clients).
 */
export function readCommands(msg: BusRequest): unknown[] | null {
  let commands: unknown[];
  try {
    if (isBinaryBatch(msg.data)) commands = decodeCommandBatch(msg.data);
    else {
      const body = decode(msg.data) as { commands?: unknown };
      if (!Array.isArray(body?.commands)) throw new Error('expected {commands: [...]}');
      commands = body.commands;
    }
  } catch (error) {
    reply(msg, {
      results: [],
      error: commandError('invalid_request', `malformed request: ${(error as Error).message}`),
    });
    return null;
  }
  if (commands.length === 0 || commands.length > WIRE_LIMITS.requestCommandsMax) {
    reply(msg, {
      results: [],
      error: commandError('invalid_request', `a request carries 1..${WIRE_LIMITS.requestCommandsMax} commands`),
    });
    return null;
  }
  return commands;
}

/**
 * Each command checked for shape; `close` and `cancel` only from the
 * operators' subject (`admin`): NATS permissions keep everyone else off
 * `auction.admin.>`, and on the command subject they are `forbidden`.
 */
export function parseCommands(commands: unknown[], admin: boolean): Parsed[] {
  return commands.map((raw): Parsed => {
    const p = parseCommand(raw);
    if (admin || 'status' in p || (p.command.type !== 'close' && p.command.type !== 'cancel')) return p;
    return commandError(
      'forbidden',
      `${p.command.type} is an operator action: use auctionctl (subject auction.admin.engine.<shard>)`,
    );
  });
}

/**
 * An operator's request on `auction.admin.engine.<shard>`: commands (as on
 * the command subject), or an op of EngineAdminOperations. Anything else is
 * answered here and null returned.
 */
export function readAdminRequest(msg: BusRequest): RequestOf<EngineAdminOperations> | 'commands' | null {
  const body = decodeRequest(msg);
  if (Array.isArray((body as { commands?: unknown } | undefined)?.commands)) return 'commands';
  return parseOperation<EngineAdminOperations>(msg, body, engineAdminParsers, 'admin');
}
