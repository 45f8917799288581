export { AuctionCore, LIMITS, copyBidOutcome, type CoreConfig, type CoreImage, RECORD_BYTES } from './core.js';
export { encodeSnapshot, encodeImage, decodeSnapshot, readSnapshotImage } from './snapshot.js';
export { InvariantError } from './errors.js';
export { IdempotencyTable } from './idempotency.js';
export { DueHeap } from './due-heap.js';
