import { Packr } from 'msgpackr';
import type { Command, Outcome } from './commands.js';
import { REASONS, type Reason } from './reasons.js';

/**
 * The NATS wire protocol between gateways, engines, replicas and the audit
 * store: msgpack written with msgpackr records (each message defines its own
 * record shapes, so it decodes on its own, and msgpackr decoders read plain
 * maps and records alike). Records make the repeated shapes of batched
 * commands, results and events several times cheaper to decode and smaller.
 * Client-facing msgpack (WebSocket frames) is plain maps, for any library.
 */
export const packr = new Packr({ useRecords: true, moreTypes: false });
export const encode = (value: unknown): Uint8Array => packr.pack(value);
export const decode = (bytes: Uint8Array): unknown => packr.unpack(bytes);

/**
 * Log batches (the shard streams). Records measured on a 500-event batch: 4x
 * smaller, 7x faster to decode and 2x faster to encode than plain maps; each
 * message carries its own definitions, so a reader can start anywhere.
 */
export const encodeLog = (batch: LogBatch): Uint8Array => packr.pack(batch);
export const decodeLog = (bytes: Uint8Array): LogBatch => packr.unpack(bytes) as LogBatch;

/** Bounds of the wire, enforced by engines (and gateways before them). */
export const WIRE_LIMITS = {
  /** Commands in one request. */
  requestCommandsMax: 1_024,
  titleCharsMax: 200,
  descriptionCharsMax: 10_000,
  imageUrlCharsMax: 2_048,
  cancelReasonCharsMax: 500,
};

/** Text that travels with a command into its event, never into engine memory. */
export type CommandText = { title?: string; description?: string; imageUrl?: string; reason?: string };

/** A request to a shard's command subject: `{commands: [...]}` (msgpack). */
export type CommandRequest = { commands: unknown[] };

/** The answer to one command: its outcome, or an error that was never logged. */
export type CommandResult = (Outcome & { seq?: number }) | CommandError;
export type CommandError = { status: 'error'; code: Reason; message: string };
export type CommandReply = { results: CommandResult[] };

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

export function commandError(code: Reason, message: string = REASONS[code]): CommandError {
  return { status: 'error', code, message };
}

type Parsed = { command: Command; text?: CommandText } | CommandError;

const isNumber = (v: unknown): v is number => typeof v === 'number';

function optionalText(
  raw: Record<string, unknown>,
  field: keyof CommandText,
  max: number,
): string | undefined | CommandError {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') return commandError('invalid_request', `${field} must be a string`);
  if (value.length > max) return commandError('invalid_request', `${field} is longer than ${max} characters`);
  return value;
}

/**
 * Checks the shape of a command from the wire: a known type and fields of the
 * right JSON types. Ranges (amounts, ids, times) are the core's business, so
 * that such rejections are decided and logged like any other.
 */
export function parseCommand(raw: unknown): Parsed {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    return commandError('invalid_request', 'a command must be an object');
  const r = raw as Record<string, unknown>;
  const numbers = (...fields: string[]): CommandError | null => {
    for (const f of fields) if (!isNumber(r[f])) return commandError('invalid_request', `${f} must be a number`);
    return null;
  };
  switch (r.type) {
    case 'bid': {
      const bad = numbers('auctionId', 'bidderId', 'bidId', 'maxBid');
      if (bad) return bad;
      return {
        command: {
          type: 'bid',
          auctionId: r.auctionId as number,
          bidderId: r.bidderId as number,
          bidId: r.bidId as number,
          maxBid: r.maxBid as number,
        },
      };
    }
    case 'create': {
      const bad = numbers('sellerId', 'startingPrice', 'endsAt');
      if (bad) return bad;
      for (const f of ['reservePrice', 'startsAt', 'softCloseSeconds']) {
        if (r[f] !== undefined && r[f] !== null && !isNumber(r[f]))
          return commandError('invalid_request', `${f} must be a number`);
      }
      const text: CommandText = {};
      for (const [field, max] of [
        ['title', WIRE_LIMITS.titleCharsMax],
        ['description', WIRE_LIMITS.descriptionCharsMax],
        ['imageUrl', WIRE_LIMITS.imageUrlCharsMax],
      ] as const) {
        const value = optionalText(r, field, max);
        if (typeof value === 'object') return value;
        if (value !== undefined) text[field] = value;
      }
      return {
        command: {
          type: 'create',
          sellerId: r.sellerId as number,
          startingPrice: r.startingPrice as number,
          reservePrice: (r.reservePrice as number | undefined) ?? 0,
          startsAt: (r.startsAt as number | undefined) ?? 0,
          endsAt: r.endsAt as number,
          softCloseSeconds: (r.softCloseSeconds as number | undefined) ?? 0,
        },
        text,
      };
    }
    case 'close':
    case 'cancel': {
      const bad = numbers('auctionId');
      if (bad) return bad;
      const reason = optionalText(r, 'reason', WIRE_LIMITS.cancelReasonCharsMax);
      if (typeof reason === 'object') return reason;
      const command: Command =
        r.type === 'close'
          ? { type: 'close', auctionId: r.auctionId as number, force: true }
          : { type: 'cancel', auctionId: r.auctionId as number };
      return reason === undefined ? { command } : { command, text: { reason } };
    }
    default:
      // `open` and timer closes are the engine's own; clients cannot send them.
      return commandError('invalid_request', `unknown command type: ${String(r.type).slice(0, 40)}`);
  }
}
