import { Packr } from 'msgpackr';
import { REASON_CODES, type Reason } from '../reasons.js';

/**
 * What every binary batch of the internal wire starts with (docs/wire-format.md):
 * a magic byte, the kind of batch and the format's version. 0xAB is a msgpack
 * fixstr, which no msgpack message of this wire ever starts with (they are
 * maps or records), so a reader tells a binary batch from the msgpack one an
 * older writer sent by its first byte.
 */
export const BATCH_MAGIC = 0xab;

export const BATCH_KINDS = { log: 1, commands: 2, results: 3 } as const;
export type BatchKind = keyof typeof BATCH_KINDS;

/** The one version each kind has today; a reader refuses any other. */
export const BATCH_VERSION = 1;

/** A batch this reader cannot read: wrong kind, unknown version, truncated or inconsistent. */
export class BatchFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BatchFormatError';
  }
}

export function isBinaryBatch(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === BATCH_MAGIC;
}

/** Checks magic, kind and version; returns a little-endian view of the batch. */
export function openBatch(bytes: Uint8Array, kind: BatchKind, headerBytes: number): DataView {
  if (bytes.length < headerBytes)
    throw new BatchFormatError(`${kind} batch: ${bytes.length} bytes, shorter than its ${headerBytes}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint8(0) !== BATCH_MAGIC) throw new BatchFormatError(`${kind} batch: not a binary batch`);
  const got = view.getUint8(1);
  if (got !== BATCH_KINDS[kind]) throw new BatchFormatError(`expected a ${kind} batch, got kind ${got}`);
  const version = view.getUint16(2, true);
  if (version !== BATCH_VERSION)
    throw new BatchFormatError(`${kind} batch of version ${version}: this reader knows version ${BATCH_VERSION}`);
  return view;
}

export function writeHeaderStart(view: DataView, kind: BatchKind): void {
  view.setUint8(0, BATCH_MAGIC);
  view.setUint8(1, BATCH_KINDS[kind]);
  view.setUint16(2, BATCH_VERSION, true);
}

/** The trailing section (rare, variable parts): plain msgpack maps, no records (nothing to define per batch). */
export const trailerPackr = new Packr({ useRecords: false, moreTypes: false });

export const isU32 = (x: number): boolean => x >>> 0 === x;

/** Reason codes as one byte: 0 for none, 1 + the index in REASON_CODES. */
const REASON_BYTE = new Map<Reason, number>(REASON_CODES.map((code, i) => [code, i + 1]));

export function reasonByte(reason: Reason | undefined): number {
  return reason === undefined ? 0 : (REASON_BYTE.get(reason) ?? -1);
}

export function reasonOfByte(byte: number, kind: BatchKind): Reason | undefined {
  if (byte === 0) return undefined;
  const reason = REASON_CODES[byte - 1];
  if (reason === undefined) throw new BatchFormatError(`${kind} batch: unknown reason byte ${byte}`);
  return reason;
}

/** Bounds of one batch's counts (the wire never carries more; a forged header cannot make a reader allocate more). */
export const BATCH_COUNT_MAX = 1 << 20;

export function checkCount(count: number, what: string, kind: BatchKind): void {
  if (count > BATCH_COUNT_MAX)
    throw new BatchFormatError(`${kind} batch: ${count} ${what}, more than ${BATCH_COUNT_MAX}`);
}
