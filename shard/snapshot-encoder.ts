import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { encodeImage, type CoreImage } from '../engine/core/index.js';
import { encode } from '../protocol/index.js';
import type { SnapshotMeta } from './ports.js';

/**
 * A snapshot file's bytes, encoded on a worker thread. Packing and hashing a
 * shard's image (tens of megabytes at a million auctions) took ~150 ms of the
 * event loop and more to wrap it in the file's envelope: every command waited
 * behind it (p99 at half the peak of `make bench-engine` 332 ms against 13 ms
 * with snapshots off). The image is already a copy of the core, taken at
 * one point of the sequence, and its buffers are the image's own (every
 * array in a CoreImage is a fresh copy): they are transferred to the worker,
 * not cloned, which took another ~45 ms of the event loop per snapshot of
 * `make bench-engine`. Only the worker's start remains on it. Small images
 * are encoded at once (WORKER_IMAGE_BYTES_MIN).
 */
type EncodeJob = { kind: 'snapshot-encode'; meta: SnapshotMeta; image: CoreImage };

/**
 * Images smaller than this are encoded at once on the event loop: a few
 * milliseconds at most (~5 ms per MiB measured), less than starting a worker,
 * which would also delay every stop and placement hand-over (each writes a
 * final snapshot) for shards with little in them.
 */
export const WORKER_IMAGE_BYTES_MIN = 1 << 20;

/** The typed arrays an image holds, wherever they sit in it. */
function imageArrays(value: unknown, into: ArrayBufferView[] = []): ArrayBufferView[] {
  if (ArrayBuffer.isView(value)) into.push(value);
  else if (value && typeof value === 'object') for (const part of Object.values(value)) imageArrays(part, into);
  return into;
}

/** The bytes of the typed arrays an image holds (what encoding it costs). */
export function imageByteLength(value: unknown): number {
  return imageArrays(value).reduce((total, array) => total + array.byteLength, 0);
}

/**
 * Takes ownership of `image` (from `core.image()`, used for nothing else):
 * encoded on a worker, its buffers move there and are unusable here after.
 */
export function encodeSnapshotFile(meta: SnapshotMeta, image: CoreImage): Promise<Uint8Array> {
  const arrays = imageArrays(image);
  const bytes = arrays.reduce((total, array) => total + array.byteLength, 0);
  if (bytes < WORKER_IMAGE_BYTES_MIN) return Promise.resolve(snapshotFileBytes(meta, image));
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { kind: 'snapshot-encode', meta, image },
      transferList: [...new Set(arrays.map((array) => array.buffer as ArrayBuffer))],
    });
    worker.once('message', (bytes: Uint8Array) => resolve(bytes));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`snapshot encoder exited with ${code} before answering`)));
  });
}

/** The file: `{lastSeq, streamSeq, core}` in the wire's msgpack, `core` the snapshot bytes of the image. */
export function snapshotFileBytes(meta: SnapshotMeta, image: CoreImage): Uint8Array {
  return encode({ ...meta, core: encodeImage(image) });
}

// Inside the worker: encode, and hand the bytes back without a copy on the event loop's side. msgpackr's
// output may be a view of a buffer it shares (or of Node's pool, which is not transferable): the worker copies
// it into a buffer of its own and transfers that.
const job = isMainThread ? null : (workerData as EncodeJob | null);
if (job?.kind === 'snapshot-encode') {
  const packed = snapshotFileBytes(job.meta, job.image);
  const bytes = new Uint8Array(packed.byteLength);
  bytes.set(packed);
  parentPort!.postMessage(bytes, [bytes.buffer]);
}
