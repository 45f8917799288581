import { Packr } from 'msgpackr';
import type { Command } from './commands.js';
import { REASONS, type Reason } from './reasons.js';
import { isBinaryBatch } from './binary/header.js';
import { decodeLogBatch, encodeLogBatch } from './binary/log-format.js';

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
 * Log batches (the shard streams): binary, version 1 (protocol/binary/log-format.ts,
 * docs/wire-format.md). Streams written before it hold msgpack batches with
 * records; a reader tells them apart by the first byte and reads both.
 */
export const encodeLog = (batch: LogBatch): Uint8Array => encodeLogBatch(batch);
export const decodeLog = (bytes: Uint8Array): LogBatch =>
  isBinaryBatch(bytes) ? decodeLogBatch(bytes) : (packr.unpack(bytes) as LogBatch);

/** Bounds of the wire, enforced by engines (and gateways before them). */
export const WIRE_LIMITS = {
  /** Commands in one request. */
  requestCommandsMax: 1_024,
  titleCharsMax: 200,
  descriptionCharsMax: 10_000,
  imageUrlCharsMax: 2_048,
  cancelReasonCharsMax: 500,
};

export type {
  CommandText,
  CommandRequest,
  CommandResult,
  CommandError,
  CommandReply,
  LogEvent,
  LogBatch,
} from './batches.js';
import type { CommandError, CommandText, LogBatch } from './batches.js';

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
