import { encode } from '../protocol/index.js';
import {
  RevisionConflictError,
  type Cancel,
  type Clock,
  type LeaseBucketPort,
  type LeaseEntry,
  type LeaseStorePort,
} from '../shard/ports.js';

/** NATS KV keys allow these characters only; anything else in an engine id becomes `_`. */
const KEY_UNSAFE = /[^-/_=.a-zA-Z0-9]/g;

/** The key a process probes the bucket with: one per engine id, so restarts reuse it (the bucket keeps one value per key). */
export const probeKey = (engineId: string) => `probe.${engineId.replace(KEY_UNSAFE, '_')}`;

/**
 * Whether the lease bucket takes this process's writes, and since when. A
 * holder that has not renewed for a TTL is only judged gone once the bucket
 * has taken this process's writes for that TTL (replica/lease.ts): while the
 * bucket's stream elects a leader (4-9 s on nats-server 2.9 after a NATS
 * node's loss) nobody can renew, so silence says nothing about the holder,
 * which keeps serving on the strength of its log appends. Judging silence
 * then made every primary stop after its TTL and every replica race to take
 * over once the bucket was back (make chaos SEED=203: 6.5 and 7.7 s without
 * a primary after kills that took only the bucket's leader).
 *
 * Every write through it counts, renewals and takeovers included: an
 * answer, even a revision conflict, says the bucket took the write; a
 * failure with no answer for more than `everyMs` says it may not. A process that had no
 * answer for `everyMs` writes its own key (`probeKey`), one write at a time.
 */
export class LeaseBucketProbe implements LeaseBucketPort {
  private since: number | null = null;
  private lastAnswerAt = Number.NEGATIVE_INFINITY;
  private timer: Cancel | null = null;
  private probing = false;

  constructor(
    private readonly store: LeaseStorePort,
    private readonly clock: Clock,
    private readonly key: string,
    private readonly everyMs: number,
  ) {}

  writableSince(): number | null {
    return this.since;
  }

  /**
   * Probes at once, then whenever no write was answered for more than
   * `everyMs` (checked twice a period): a process renewing leases every
   * `everyMs` needs no probes, one that only watches probes every 1.5
   * periods or so, and a failure is seen well within a TTL of three periods or more.
   */
  start(): void {
    if (this.timer) return;
    this.probe();
    this.timer = this.clock.every(Math.max(1, Math.floor(this.everyMs / 2)), () => {
      if (this.clock.now() - this.lastAnswerAt > this.everyMs) this.probe();
    });
  }

  stop(): void {
    this.timer?.();
    this.timer = null;
  }

  get(key: string): Promise<LeaseEntry | null> {
    return this.store.get(key);
  }

  watch(key: string, onEntry: (entry: LeaseEntry) => void): Promise<{ stop(): void }> {
    return this.store.watch(key, onEntry);
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.counted(this.store.create(key, value));
  }

  update(key: string, value: Uint8Array, revision: number, timeoutMs?: number): Promise<number> {
    return this.counted(this.store.update(key, value, revision, timeoutMs));
  }

  delete(key: string, revision: number): Promise<void> {
    return this.counted(this.store.delete(key, revision));
  }

  put(key: string, value: Uint8Array, timeoutMs: number): Promise<number> {
    return this.counted(this.store.put(key, value, timeoutMs));
  }

  private probe(): void {
    if (this.probing) return;
    this.probing = true;
    // The probe's deadline is its period: a bucket that cannot answer within it is marked down before a TTL passes.
    this.put(this.key, encode({ at: this.clock.now() }), this.everyMs)
      .catch(() => undefined) // counted already
      .finally(() => (this.probing = false));
  }

  private async counted<T>(write: Promise<T>): Promise<T> {
    try {
      const answer = await write;
      this.answered();
      return answer;
    } catch (error) {
      if (error instanceof RevisionConflictError) this.answered();
      // One timeout while others are answered is a slow write, not a bucket without a leader: under load a
      // busy engine's renewals time out now and then, and resetting on each kept its standbys from ever
      // judging a dead peer's lease (n leases renewed 5 times a second leave few clean seconds).
      else if (this.clock.now() - this.lastAnswerAt > this.everyMs) this.since = null;
      throw error;
    }
  }

  private answered(): void {
    const now = this.clock.now();
    this.lastAnswerAt = now;
    if (this.since === null) this.since = now;
  }
}
