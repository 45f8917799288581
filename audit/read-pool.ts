import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { AuditAdminOperations, AuditQueryOperations, RequestOf } from '../protocol/operations.js';
import { QueryError } from './queries.js';

/** The reads a worker answers: every query but the position (the consumer's own state), and the operators' events. */
export type ReadRequest =
  | Exclude<RequestOf<AuditQueryOperations>, { op: 'position' }>
  | Extract<RequestOf<AuditAdminOperations>, { op: 'events' }>;
export type ReadJob = { id: number; shard: number; request: ReadRequest };
/** The shards whose public queries a worker takes from NATS, changed while another worker is replaced. */
export type ServeShards = { serve: number[] };
export type ToReadWorker = ReadJob | ServeShards;
export type ReadAnswer =
  /** Subscribed (with a NATS URL) and taking work. */
  | { ready: true }
  /** A failure the worker met answering NATS, for the process's log. */
  | { log: string }
  | { id: number; reply: unknown }
  /** The client's to fix (a bad cursor, limit, sort): its message is for the client. */
  | { id: number; queryError: string }
  /** The worker's own failure (SQLite's text): for the log only. */
  | { id: number; failure: string };
/** `shards`: the shards whose public queries the worker takes from NATS when it starts (with a URL). */
export type ReadWorkerData = { dataDir: string; natsUrl?: string; shards: number[] };
/** The queue group of the read workers on each shard's query subject: one of them answers each query. */
export const AUDIT_READS_QUEUE = 'audit-reads';

/** Every worker has this many reads waiting, or none is running: the next is refused, to be retried (a bound, not a queue without end). */
export class ReadsFull extends Error {
  override name = 'ReadsFull';
}

type Pending = { resolve: (reply: unknown) => void; reject: (error: Error) => void };
type Slot = {
  worker: Worker;
  pending: Map<number, Pending>;
  ready: Promise<void>;
  alive: boolean;
  /** The shards this worker owns (serves from its start). */
  owned: number[];
  /** The shards it serves now: its own, plus a dead worker's until that one's replacement is ready. */
  serving: number[];
};
/** A worker that died is replaced after this long (one that cannot start must not spin). */
const RESPAWN_MS = 1_000;

export type ReadPoolOptions = {
  dataDir: string;
  /** With it, each worker takes the public queries of `shards` from NATS itself (audit/read-worker.ts). */
  natsUrl?: string;
  shards?: number[];
  /** Worker threads (at least one). */
  size: number;
  /** Reads waiting per worker at most. */
  pendingMax: number;
  logger: Logger;
};

/**
 * The audit's queries answered on worker threads (audit/read-worker.ts),
 * off the thread that writes the files. At 10M auctions a search asks all
 * eight shards of one audit at once and each costs milliseconds; on the
 * writing thread they queued behind one another and behind every write
 * transaction (make bench-scale: search p99 633 ms). A read sent through
 * the pool goes to the worker with the fewest waiting; a worker that dies
 * fails its reads and is replaced.
 *
 * From NATS, each worker owns every size-th shard and takes only their
 * queries: a search asks every shard at once, and in one queue group of all
 * workers on all shards NATS picked a worker per query at random, so with two
 * workers and eight shards one of them got six or more of the eight 29% of the
 * time, seven or more 7% (make bench-scale run 14: search p50 39 ms, p99 80,
 * at ~6 ms a shard). Owned, each gets exactly its share. While a dead
 * worker is replaced, the living one with the fewest shards serves its shards
 * too, so no shard goes unanswered.
 */
export class ReadPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closing = false;

  constructor(private readonly o: ReadPoolOptions) {
    const size = Math.max(1, o.size);
    const shards = o.shards ?? [];
    for (let i = 0; i < size; i++) this.slots.push(this.spawn(shards.filter((_, k) => k % size === i)));
  }

  private spawn(owned: number[]): Slot {
    const worker = new Worker(new URL('./read-worker.js', import.meta.url), {
      workerData: { dataDir: this.o.dataDir, natsUrl: this.o.natsUrl, shards: owned } satisfies ReadWorkerData,
    });
    let onReady = () => {};
    const slot: Slot = {
      worker,
      pending: new Map(),
      ready: new Promise((resolve) => (onReady = resolve)),
      alive: true,
      owned,
      serving: owned,
    };
    worker.on('message', (answer: ReadAnswer) => {
      if ('ready' in answer) return onReady();
      if ('log' in answer) return this.o.logger.error({ worker: worker.threadId }, answer.log);
      const pending = slot.pending.get(answer.id);
      if (!pending) return;
      slot.pending.delete(answer.id);
      if ('reply' in answer) pending.resolve(answer.reply);
      else if ('queryError' in answer) pending.reject(new QueryError(answer.queryError));
      else pending.reject(new Error(answer.failure));
    });
    worker.on('error', (error) => this.o.logger.error({ err: error }, 'read worker failed'));
    worker.on('exit', (code) => {
      slot.alive = false;
      for (const pending of slot.pending.values()) pending.reject(new Error(`read worker exited with ${code}`));
      slot.pending.clear();
      if (this.closing) return;
      this.o.logger.error({ code }, 'read worker exited; starting another');
      this.coverFor(slot);
      setTimeout(() => {
        if (!this.closing) this.replace(slot);
      }, RESPAWN_MS).unref();
    });
    return slot;
  }

  /** The living worker serving the fewest shards takes a dead one's too. */
  private coverFor(dead: Slot): void {
    const alive = this.slots.filter((s) => s.alive);
    if (alive.length === 0 || dead.serving.length === 0) return;
    const helper = alive.reduce((best, s) => (s.serving.length < best.serving.length ? s : best));
    this.serve(helper, [...helper.serving, ...dead.serving]);
  }

  /** A new worker for the dead one's own shards; once it serves them, the helpers give them back. */
  private replace(dead: Slot): void {
    const next = this.spawn(dead.owned);
    this.slots[this.slots.indexOf(dead)] = next;
    void next.ready.then(() => {
      if (this.closing || !next.alive) return;
      for (const other of this.slots)
        if (other !== next && other.alive && other.serving.length > other.owned.length)
          this.serve(
            other,
            other.serving.filter((shard) => other.owned.includes(shard) || !next.owned.includes(shard)),
          );
    });
  }

  private serve(slot: Slot, shards: number[]): void {
    slot.serving = [...new Set(shards)];
    slot.worker.postMessage({ serve: slot.serving } satisfies ServeShards);
  }

  /** The shards each living worker takes from NATS now (status, tests). */
  serving(): number[][] {
    return this.slots.filter((s) => s.alive).map((s) => [...s.serving]);
  }

  /** Resolves once every worker started with the pool takes work (has subscribed, with a NATS URL). */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.ready));
  }

  /** The reply of `request` on `shard`'s file; rejects with QueryError (the client's), ReadsFull, or the failure. */
  read(shard: number, request: ReadRequest): Promise<unknown> {
    if (this.closing) return Promise.reject(new Error('the audit is stopping'));
    const alive = this.slots.filter((s) => s.alive);
    if (alive.length === 0) return Promise.reject(new ReadsFull('no read worker is running (one is being replaced)'));
    const slot = alive.reduce((best, s) => (s.pending.size < best.pending.size ? s : best));
    if (slot.pending.size >= this.o.pendingMax)
      return Promise.reject(new ReadsFull(`${this.o.pendingMax * this.slots.length} reads are waiting`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ id, shard, request } satisfies ToReadWorker);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
