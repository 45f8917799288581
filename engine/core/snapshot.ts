import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import { AuctionCore, type CoreConfig, type CoreImage } from './core.js';
import { InvariantError, invariant } from './errors.js';
import { sortPairs } from './image-capture.js';

/**
 * Snapshot bytes: a msgpack envelope `{format, version, sha256, body}` whose
 * body is the msgpack image, typed arrays carried as raw little-endian bytes.
 * The checksum makes a torn or corrupt file fail loudly on restore instead of
 * starting an engine with bad state.
 */
const FORMAT = 'auction-core-snapshot';
const VERSION = 1;
const packr = new Packr({ useRecords: false, moreTypes: false });

type TypedArray = Float64Array | Uint32Array | Uint16Array | Uint8Array;
type Tagged = { kind: 'f64' | 'u32' | 'u16' | 'u8'; bytes: Uint8Array };

export function encodeSnapshot(core: AuctionCore): Uint8Array {
  return encodeImage(core.image());
}

/**
 * The snapshot bytes of an image. The image is a copy (AuctionCore.image or
 * a capture), so this may run later or on another thread while the core goes
 * on deciding (shard/snapshot-encoder.ts). Side tables are written in number
 * order, as the state hash reads them, whatever order the capture took.
 */
export function encodeImage(image: CoreImage): Uint8Array {
  const canonical = { ...image, reserves: sortPairs(image.reserves), scheduledEnds: sortPairs(image.scheduledEnds) };
  const body = packr.pack(toPlain(canonical));
  const sha256 = createHash('sha256').update(body).digest('hex');
  return packr.pack({ format: FORMAT, version: VERSION, sha256, body });
}

/** Restores a core from snapshot bytes; `config` may change the capacities. */
export function decodeSnapshot(bytes: Uint8Array, config: Omit<CoreConfig, 'shard'>): AuctionCore {
  return AuctionCore.fromImage(readSnapshotImage(bytes), config);
}

export function readSnapshotImage(bytes: Uint8Array): CoreImage {
  let envelope: { format?: unknown; version?: unknown; sha256?: unknown; body?: unknown };
  try {
    envelope = packr.unpack(bytes) as typeof envelope;
  } catch (cause) {
    throw new InvariantError('snapshot is not valid msgpack', { cause });
  }
  invariant(envelope?.format === FORMAT, 'not an auction-core snapshot');
  invariant(envelope.version === VERSION, `unsupported snapshot version ${String(envelope.version)}`);
  invariant(envelope.body instanceof Uint8Array, 'snapshot body missing');
  const sha256 = createHash('sha256').update(envelope.body).digest('hex');
  invariant(sha256 === envelope.sha256, 'snapshot checksum mismatch');
  return fromPlain(packr.unpack(envelope.body));
}

function toPlain(value: unknown): unknown {
  if (ArrayBuffer.isView(value)) return tag(value as TypedArray);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]));
  }
  return value;
}

function fromPlain(value: unknown): CoreImage {
  return untagDeep(value) as CoreImage;
}

function untagDeep(value: unknown): unknown {
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (typeof record.kind === 'string' && record.bytes instanceof Uint8Array) return untag(record as Tagged);
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, untagDeep(v)]));
  }
  return value;
}

function tag(array: TypedArray): Tagged {
  const kind =
    array instanceof Float64Array
      ? 'f64'
      : array instanceof Uint32Array
        ? 'u32'
        : array instanceof Uint16Array
          ? 'u16'
          : 'u8';
  return { kind, bytes: new Uint8Array(array.buffer, array.byteOffset, array.byteLength) };
}

function untag({ kind, bytes }: Tagged): TypedArray {
  // Copy: the decoded bytes may sit at an offset that breaks alignment.
  const aligned = new Uint8Array(bytes).buffer;
  switch (kind) {
    case 'f64':
      return new Float64Array(aligned);
    case 'u32':
      return new Uint32Array(aligned);
    case 'u16':
      return new Uint16Array(aligned);
    case 'u8':
      return new Uint8Array(aligned);
    default:
      throw new InvariantError(`unknown array kind in snapshot: ${String(kind)}`);
  }
}
