import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { getPriority, setPriority } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { PRIVATE_FILE_MODE } from '../service/private-files.js';
import { encodeImage, type CoreImage } from '../engine/core/index.js';
import { encode } from '../protocol/index.js';
import type { SnapshotMeta } from './ports.js';

/**
 * A snapshot file, encoded and written on a worker thread. Packing and hashing a
 * shard's image (tens of megabytes at a million auctions) took ~150 ms of the
 * event loop and more to wrap it in the file's envelope: every command waited
 * behind it (p99 at half the peak of `make bench-engine` 332 ms against 13 ms
 * with snapshots off). The image is already a copy of the core, taken at
 * one point of the sequence, and its buffers are the image's own (every
 * array in a CoreImage is a fresh copy): they are transferred to the worker,
 * not cloned, which took another ~45 ms of the event loop per snapshot of
 * `make bench-engine`. Only the worker's start remains on it. The worker
 * writes and fsyncs the file too: the encoded bytes (40 MB for 1.25M
 * auctions) handed back stayed in the engine's memory until V8 next
 * collected, which its 15 MB heap seldom makes it do (make bench-scale: the
 * primaries, snapshotting every minute, grew ~40 B per auction more than the
 * replicas). Small images are encoded and written at once
 * (WORKER_IMAGE_BYTES_MIN).
 */
type WriteJob = { kind: 'snapshot-write'; meta: SnapshotMeta; image: CoreImage; path: string };

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
 * Writes the snapshot file of `image` to `path` (created owner-only, then
 * fsynced). Takes ownership of `image` (a capture's or `core.image()`, used for nothing
 * else): written on a worker, its buffers move there and are unusable here after.
 */
export async function writeSnapshotFile(
  meta: SnapshotMeta,
  image: CoreImage,
  path: string,
): Promise<{ workerNice: number | null }> {
  const arrays = imageArrays(image);
  const bytes = arrays.reduce((total, array) => total + array.byteLength, 0);
  if (bytes < WORKER_IMAGE_BYTES_MIN) {
    const file = await open(path, 'w', PRIVATE_FILE_MODE);
    try {
      await file.writeFile(snapshotFileBytes(meta, image));
      await file.sync();
    } finally {
      await file.close();
    }
    return { workerNice: null };
  }
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { kind: 'snapshot-write', meta, image, path } satisfies WriteJob,
      transferList: [...new Set(arrays.map((array) => array.buffer as ArrayBuffer))],
    });
    worker.once('message', (workerNice: number) => resolve({ workerNice }));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`snapshot writer exited with ${code} before it was done`)));
  });
}

/** The file: `{lastSeq, streamSeq, core}` in the wire's msgpack, `core` the snapshot bytes of the image. */
export function snapshotFileBytes(meta: SnapshotMeta, image: CoreImage): Uint8Array {
  return encode({ ...meta, core: encodeImage(image) });
}

/**
 * The worker's own priority, below every serving thread's: encoding 40 MB takes
 * ~200 ms of CPU, and make bench-scale's eight shards came due together when
 * bids resumed at 10M auctions, on a machine already busy serving them. The
 * encoders then starved nats-server and the engines' lease renewals for over a
 * second and both primaries lost their leases. On Linux a thread has a nice
 * value of its own: this lowers only the worker's.
 */
const WORKER_NICE = 19;

// Inside the worker: encode, write and fsync; only "done" (with the worker's nice value) goes back.
const job = isMainThread ? null : (workerData as WriteJob | null);
if (job?.kind === 'snapshot-write') {
  try {
    setPriority(WORKER_NICE);
  } catch {
    // Where threads cannot be given their own priority, the snapshot is written all the same.
  }
  const packed = snapshotFileBytes(job.meta, job.image);
  const fd = openSync(job.path, 'w', PRIVATE_FILE_MODE);
  try {
    for (let at = 0; at < packed.byteLength;) at += writeSync(fd, packed, at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  parentPort!.postMessage(getPriority());
}
