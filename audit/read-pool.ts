import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { AuditAdminOperations, AuditQueryOperations, RequestOf } from '../protocol/operations.js';
import { QueryError } from './queries.js';

/** The reads a worker answers: every query but the position (the consumer's own state), and the operators' events. */
export type ReadRequest =
  | Exclude<RequestOf<AuditQueryOperations>, { op: 'position' }>
  | Extract<RequestOf<AuditAdminOperations>, { op: 'events' }>;
export type ReadJob = { id: number; shard: number; request: ReadRequest };
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
export type ReadWorkerData = { dataDir: string; natsUrl?: string; shards: number[] };
/** The queue group of a process's read workers on each shard's query subject: one of them answers each query. */
export const AUDIT_READS_QUEUE = 'audit-reads';

/** Every worker has this many reads waiting, or none is running: the next is refused, to be retried (a bound, not a queue without end). */
export class ReadsFull extends Error {
  override name = 'ReadsFull';
}

type Pending = { resolve: (reply: unknown) => void; reject: (error: Error) => void };
type Slot = { worker: Worker; pending: Map<number, Pending>; ready: Promise<void>; alive: boolean };
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
 * transaction (make bench-scale: search p99 633 ms). A read goes to the
 * worker with the fewest waiting; a worker that dies fails its reads and is
 * replaced.
 */
export class ReadPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closing = false;

  constructor(private readonly o: ReadPoolOptions) {
    for (let i = 0; i < Math.max(1, o.size); i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./read-worker.js', import.meta.url), {
      workerData: {
        dataDir: this.o.dataDir,
        natsUrl: this.o.natsUrl,
        shards: this.o.shards ?? [],
      } satisfies ReadWorkerData,
    });
    let onReady = () => {};
    const slot: Slot = {
      worker,
      pending: new Map(),
      ready: new Promise((resolve) => (onReady = resolve)),
      alive: true,
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
      setTimeout(() => {
        if (!this.closing) this.slots[this.slots.indexOf(slot)] = this.spawn();
      }, RESPAWN_MS).unref();
    });
    return slot;
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
      slot.worker.postMessage({ id, shard, request } satisfies ReadJob);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
