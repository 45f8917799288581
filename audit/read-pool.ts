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
  | { id: number; reply: unknown }
  /** The client's to fix (a bad cursor, limit, sort): its message is for the client. */
  | { id: number; queryError: string }
  /** The worker's own failure (SQLite's text): for the log only. */
  | { id: number; failure: string };
export type ReadWorkerData = { dataDir: string };

/** Every worker has this many reads waiting: the next is refused, to be retried (a bound, not a queue without end). */
export class ReadsFull extends Error {
  override name = 'ReadsFull';
}

type Pending = { resolve: (reply: unknown) => void; reject: (error: Error) => void };
type Slot = { worker: Worker; pending: Map<number, Pending> };

export type ReadPoolOptions = {
  dataDir: string;
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
      workerData: { dataDir: this.o.dataDir } satisfies ReadWorkerData,
    });
    const slot: Slot = { worker, pending: new Map() };
    worker.on('message', (answer: ReadAnswer) => {
      const pending = slot.pending.get(answer.id);
      if (!pending) return;
      slot.pending.delete(answer.id);
      if ('reply' in answer) pending.resolve(answer.reply);
      else if ('queryError' in answer) pending.reject(new QueryError(answer.queryError));
      else pending.reject(new Error(answer.failure));
    });
    worker.on('error', (error) => this.o.logger.error({ err: error }, 'read worker failed'));
    worker.on('exit', (code) => {
      for (const pending of slot.pending.values()) pending.reject(new Error(`read worker exited with ${code}`));
      slot.pending.clear();
      if (this.closing) return;
      this.o.logger.error({ code }, 'read worker exited; starting another');
      this.slots[this.slots.indexOf(slot)] = this.spawn();
    });
    return slot;
  }

  /** The reply of `request` on `shard`'s file; rejects with QueryError (the client's), ReadsFull, or the failure. */
  read(shard: number, request: ReadRequest): Promise<unknown> {
    const slot = this.slots.reduce((best, s) => (s.pending.size < best.pending.size ? s : best));
    if (this.closing) return Promise.reject(new Error('the audit is stopping'));
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
