import type { LogBatch } from '../protocol/index.js';
import type { ShardStreamConfig } from '../protocol/shard-stream.js';
import type { AuctionCore, CoreConfig, CoreImage } from '../engine/core/index.js';

/**
 * What a shard copy is built with. Everything it does to the world (the log,
 * the lease, the clock, the message bus, its snapshot files) goes through
 * these small interfaces, so the same code runs on NATS JetStream and NATS KV
 * in production (engine/log.ts, replica/kv-lease-store.ts, shard/node-clock.ts,
 * shard/nats-bus.ts) and on in-memory fakes with a simulated clock in the
 * deterministic simulator (testkit/simulator/).
 */

/** The append was refused because the log moved on (the expected-sequence fence): this writer is deposed. */
export class DeposedError extends Error {
  readonly code = 'deposed';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DeposedError';
  }
}

/**
 * The shard's log ends before a message known to have been durable (to this
 * copy, its snapshot, or the lease's last holder): the stream lost
 * acknowledged messages, which no fence can see. No copy may decide on it:
 * the one that finds it stops the shard (docs/replica.md, "A log that lost
 * messages").
 */
export class LogLostError extends Error {
  readonly code = 'log_lost';
  constructor(message: string) {
    super(message);
    this.name = 'LogLostError';
  }
}

export type LoggedBatch = { streamSeq: number; batch: LogBatch };

/** One followed stream: messages in order until `stop`; the iterator throws when the consumer dies. */
export type LogFollower = {
  messages: AsyncIterable<LoggedBatch & { pending: number }>;
  stop(): Promise<void>;
};

/**
 * The msg id of the log message a writer appends at `streamSeq` (it names
 * writer and position, so it is unique per append): what an append that
 * follows it names as the message it chains onto.
 */
export const logMsgId = (shard: number, streamSeq: number, writer: string) => `${shard}:${streamSeq}:${writer}`;

/**
 * A shard's log. `append` carries the stream-level expected last sequence and
 * the msg id `logMsgId(shard, expectLastStreamSeq + 1, writer)`; with
 * `chainsOnto` it also expects the log's last message to be that one (JetStream
 * Nats-Expected-Last-Msg-Id). It rejects with DeposedError when either
 * expectation fails, and with any other error when the outcome is unknown
 * (the batch may or may not have landed).
 *
 * Why both: a primary pipelines appends (each expecting the previous one's
 * position). If a new primary's fence lands exactly where the old one's
 * append N should have, append N is refused, but append N+1 expects the
 * fence's position and would land after it (two writers, a gap in the event
 * sequence; simulator seed 3908). Naming the message it follows refuses it.
 * A fence names no message: it follows whatever the new primary caught up to.
 */
export interface ShardLogPort {
  ensure(
    wanted: ShardStreamConfig,
    replicas: number,
  ): Promise<{ config: ShardStreamConfig; lastStreamSeq: number; created: boolean }>;
  lastStreamSeq(): Promise<number>;
  append(
    bytes: Uint8Array,
    expectLastStreamSeq: number,
    writer: string,
    timeoutMs: number,
    chainsOnto?: string,
  ): Promise<{ seq: number }>;
  /** Delivers every batch after `afterStreamSeq` as it lands. */
  follow(afterStreamSeq: number): Promise<LogFollower>;
  /** Batches with stream sequence in (afterStreamSeq, toStreamSeq], in order. */
  read(afterStreamSeq: number, toStreamSeq: number): AsyncIterable<LoggedBatch>;
}

/** One revision of a key: `value` null when the key was deleted (or never written). */
export type LeaseEntry = { revision: number; value: Uint8Array | null };

/** A compare-and-set write found another revision than the one it named. */
export class RevisionConflictError extends Error {
  readonly code = 'revision_conflict';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RevisionConflictError';
  }
}

/**
 * The key-value store leases live in (NATS KV in production). Writes are
 * compare-and-set on the revision; `create` fails when the key has a value;
 * a write that rejects with anything but RevisionConflictError may still
 * have been applied.
 */
export interface LeaseStorePort {
  get(key: string): Promise<LeaseEntry | null>;
  /** Calls `onEntry` with every later revision of the key until `stop`. */
  watch(key: string, onEntry: (entry: LeaseEntry) => void): Promise<{ stop(): void }>;
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number, timeoutMs?: number): Promise<number>;
  delete(key: string, revision: number): Promise<void>;
  /** An unconditional write (the bucket probe's own key; never a lease). */
  put(key: string, value: Uint8Array, timeoutMs: number): Promise<number>;
}

/**
 * The lease store as one process reaches it, plus since when it has taken
 * that process's writes (null: none answered yet, or a write failed with no
 * answer for a renew period). A lease's silence is only judged after that
 * (replica/lease-bucket-probe.ts).
 */
export interface LeaseBucketPort extends LeaseStorePort {
  writableSince(): number | null;
}

/** Cancels a timer. */
export type Cancel = () => void;

/** Time as the copy sees it: wall-clock milliseconds and timers (simulated in the simulator). */
export interface Clock {
  now(): number;
  after(ms: number, fn: () => void): Cancel;
  every(ms: number, fn: () => void): Cancel;
  /** After the callbacks already due (setImmediate). */
  soon(fn: () => void): void;
  sleep(ms: number): Promise<void>;
}

/** A request as the bus delivers it (a NATS Msg satisfies this as it is: no copy on the hot path). */
export type BusRequest = { readonly data: Uint8Array; readonly reply?: string; respond(data?: Uint8Array): boolean };

/** Request subjects the copy answers on (NATS core subscriptions in production). */
export interface BusPort {
  serve(subject: string, handler: (request: BusRequest) => void): { unsubscribe(): void };
  /** Resolves once the bus routes to every subscription made before (NATS: the server has the SUBs). */
  flush(): Promise<void>;
}

/** Where a snapshot sits in the log: its state is every event up to `lastSeq`, in stream messages up to `streamSeq`. */
export type SnapshotMeta = { lastSeq: number; streamSeq: number };

/** A copy's snapshot files (shard/snapshot-store.ts). `save` takes the image synchronously; one write at a time. */
export interface SnapshotPort {
  /** Writes `image` (a copy it may keep or move to another thread) as the state at `meta`; resolves once durable. */
  save(image: CoreImage, meta: SnapshotMeta): Promise<SnapshotMeta>;
  loadNewest(
    config: Omit<CoreConfig, 'shard'>,
    onSkip: (file: string, error: unknown) => void,
  ): { core: AuctionCore; meta: SnapshotMeta; writtenAt: number } | null;
}

/**
 * What a serving copy reports about its load (the engine's metrics): how long
 * each request waited between its arrival and the batch that decided it, and
 * the commands it shed (`overloaded`) instead of queueing them.
 */
export interface LoadObserver {
  queued(ms: number): void;
  shed(commands: number): void;
}
