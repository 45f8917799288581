import type { BidOutcome } from '../commands.js';
import {
  BID_OUTCOME_RECORD_BYTES,
  fitsOutcomeRecord,
  OUTCOME,
  readOutcomeRecord,
  writeOutcomeRecord,
} from './bid-outcome-record.js';
import type { CommandReply, CommandResult } from '../batches.js';
import { BatchFormatError, checkCount, openBatch, trailerPackr, writeHeaderStart } from './header.js';

/**
 * A gateway's request to a shard's command subject and the engine's reply,
 * version 1 (docs/wire-format.md): a 16-byte header, fixed records for the
 * bids (40 bytes) and bid outcomes (64 bytes), and a trailing msgpack
 * section with everything else at its index (creations, malformed commands,
 * errors), so any command a client sends reaches the engine's checks as it
 * was sent.
 */
export const COMMANDS_HEADER_BYTES = 16;
export const COMMAND_BID_RECORD_BYTES = 40;
export const RESULT_BID_RECORD_BYTES = BID_OUTCOME_RECORD_BYTES;

type Indexed = [index: number, value: unknown][];
/** `queuedMs` (optional, from the first version on; readers before it ignore the key): the engine's queue time. */
type ResultTrailer = { results: [index: number, result: CommandResult][]; error?: CommandResult; queuedMs?: number };

const isNumber = (x: unknown): x is number => typeof x === 'number';

/** A bid command as the engine reads it: the four numbers (anything else it would ignore is not carried). */
function isRecordBid(c: unknown): c is { auctionId: number; bidderId: number; bidId: number; maxBid: number } {
  if (c === null || typeof c !== 'object') return false;
  const r = c as Record<string, unknown>;
  return r.type === 'bid' && isNumber(r.auctionId) && isNumber(r.bidderId) && isNumber(r.bidId) && isNumber(r.maxBid);
}

function writeHeader(view: DataView, kind: 'commands' | 'results', count: number, records: number, trailer: number) {
  writeHeaderStart(view, kind);
  view.setUint32(4, count, true);
  view.setUint32(8, records, true);
  view.setUint32(12, trailer, true);
}

function readHeader(bytes: Uint8Array, kind: 'commands' | 'results', recordBytes: number) {
  const view = openBatch(bytes, kind, COMMANDS_HEADER_BYTES);
  const count = view.getUint32(4, true);
  const records = view.getUint32(8, true);
  const trailerLength = view.getUint32(12, true);
  checkCount(count, 'entries', kind);
  const trailerAt = COMMANDS_HEADER_BYTES + records * recordBytes;
  if (records > count || trailerAt + trailerLength !== bytes.length)
    throw new BatchFormatError(
      `${kind} batch: ${bytes.length} bytes, expected ${trailerAt + trailerLength} for ${records} records and a ${trailerLength}-byte trailer`,
    );
  let trailer: unknown;
  try {
    trailer = trailerPackr.unpack(bytes.subarray(trailerAt));
  } catch (error) {
    throw new BatchFormatError(`${kind} batch: unreadable trailer (${(error as Error).message})`);
  }
  return { view, count, records, trailer };
}

/** Puts each entry at its index once (`taken` marks the filled ones: an entry may be undefined itself). */
function place<T>(into: T[], taken: Uint8Array, index: unknown, value: T, kind: string): void {
  if (typeof index !== 'number' || !(index >= 0 && index < into.length) || taken[index] === 1)
    throw new BatchFormatError(`${kind} batch: index ${String(index)} of ${into.length}`);
  taken[index] = 1;
  into[index] = value;
}

export function encodeCommandBatch(commands: readonly unknown[]): Uint8Array {
  const rest: Indexed = [];
  // Which commands are records, decided once: the writing loop below only reads it.
  const record = new Uint8Array(commands.length);
  let bids = 0;
  for (let i = 0; i < commands.length; i++) {
    if (isRecordBid(commands[i])) {
      record[i] = 1;
      bids++;
    } else rest.push([i, commands[i]]);
  }
  const trailer = trailerPackr.pack(rest);
  const trailerAt = COMMANDS_HEADER_BYTES + bids * COMMAND_BID_RECORD_BYTES;
  const out = new Uint8Array(trailerAt + trailer.length);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  writeHeader(view, 'commands', commands.length, bids, trailer.length);
  let at = COMMANDS_HEADER_BYTES;
  for (let i = 0; i < commands.length; i++) {
    if (record[i] === 0) continue;
    const c = commands[i] as { auctionId: number; bidderId: number; bidId: number; maxBid: number };
    view.setFloat64(at, c.auctionId, true);
    view.setFloat64(at + 8, c.bidderId, true);
    view.setFloat64(at + 16, c.bidId, true);
    view.setFloat64(at + 24, c.maxBid, true);
    view.setUint32(at + 32, i, true);
    at += COMMAND_BID_RECORD_BYTES;
  }
  out.set(trailer, trailerAt);
  return out;
}

export function decodeCommandBatch(bytes: Uint8Array): unknown[] {
  const { view, count, records, trailer } = readHeader(bytes, 'commands', COMMAND_BID_RECORD_BYTES);
  if (!Array.isArray(trailer) || records + trailer.length !== count)
    throw new BatchFormatError(`commands batch: the trailer does not hold the ${count - records} other commands`);
  const commands = new Array<unknown>(count);
  const taken = new Uint8Array(count);
  let at = COMMANDS_HEADER_BYTES;
  for (let r = 0; r < records; r++, at += COMMAND_BID_RECORD_BYTES) {
    const command = {
      type: 'bid',
      auctionId: view.getFloat64(at, true),
      bidderId: view.getFloat64(at + 8, true),
      bidId: view.getFloat64(at + 16, true),
      maxBid: view.getFloat64(at + 24, true),
    };
    place(commands, taken, view.getUint32(at + 32, true), command, 'commands');
  }
  for (const entry of trailer as unknown[]) {
    if (!Array.isArray(entry)) throw new BatchFormatError('commands batch: a trailer entry is not [index, command]');
    place(commands, taken, entry[0], entry[1], 'commands');
  }
  return commands;
}

/** A bid outcome the fixed record holds exactly (with the seq the engine adds to answers). */
function isRecordOutcome(r: CommandResult): r is BidOutcome {
  return r.status !== 'error' && r.type === 'bid' && fitsOutcomeRecord(r);
}

/** `{error}` alone (a request refused whole) is a batch of no results with the error in the trailer. */
export function encodeResultBatch(reply: Partial<CommandReply> & { error?: CommandResult }): Uint8Array {
  const results = reply.results ?? [];
  const rest: ResultTrailer = { results: [] };
  if (reply.error) rest.error = reply.error;
  if (reply.queuedMs !== undefined) rest.queuedMs = reply.queuedMs;
  const record = new Uint8Array(results.length);
  let bids = 0;
  for (let i = 0; i < results.length; i++) {
    if (isRecordOutcome(results[i])) {
      record[i] = 1;
      bids++;
    } else rest.results.push([i, results[i]]);
  }
  const trailer = trailerPackr.pack(rest);
  const trailerAt = COMMANDS_HEADER_BYTES + bids * RESULT_BID_RECORD_BYTES;
  const out = new Uint8Array(trailerAt + trailer.length);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  writeHeader(view, 'results', results.length, bids, trailer.length);
  let at = COMMANDS_HEADER_BYTES;
  for (let i = 0; i < results.length; i++) {
    if (record[i] === 0) continue;
    const o = results[i] as BidOutcome;
    writeOutcomeRecord(view, at, o, i);
    at += RESULT_BID_RECORD_BYTES;
  }
  out.set(trailer, trailerAt);
  return out;
}

export function decodeResultBatch(bytes: Uint8Array): CommandReply & { error?: CommandResult } {
  const { view, count, records, trailer } = readHeader(bytes, 'results', RESULT_BID_RECORD_BYTES);
  const t = trailer as Partial<ResultTrailer> | null;
  if (!t || !Array.isArray(t.results) || records + t.results.length !== count)
    throw new BatchFormatError(`results batch: the trailer does not hold the ${count - records} other results`);
  const results = new Array<CommandResult>(count);
  const taken = new Uint8Array(count);
  let at = COMMANDS_HEADER_BYTES;
  for (let r = 0; r < records; r++, at += RESULT_BID_RECORD_BYTES)
    place(results, taken, view.getUint32(at + OUTCOME.index, true), readOutcomeRecord(view, at, 'results'), 'results');
  for (const entry of t.results) {
    if (!Array.isArray(entry)) throw new BatchFormatError('results batch: a trailer entry is not [index, result]');
    place(results, taken, entry[0], entry[1], 'results');
  }
  const out: CommandReply & { error?: CommandResult } = { results };
  if (t.error !== undefined) out.error = t.error;
  if (typeof t.queuedMs === 'number' && Number.isFinite(t.queuedMs) && t.queuedMs >= 0) out.queuedMs = t.queuedMs;
  return out;
}
