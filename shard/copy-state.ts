import type { Logger } from 'pino';
import { AuctionCore } from '../engine/core/index.js';
import type { ImageCapture } from '../engine/core/image-capture.js';
import type { LogBatch } from '../protocol/index.js';
import type { ShardCopyStatus } from '../protocol/cluster.js';
import {
  DeposedError,
  LogLostError,
  logMsgId,
  type Clock,
  type ShardLogPort,
  type SnapshotMeta,
  type SnapshotPort,
} from './ports.js';
import { replayBatch } from './replay.js';

export type CoreConfig = { auctionsMax: number; idempotencyEntriesMax: number };

/**
 * Bytes of image a snapshot copies per event-loop turn: about a millisecond
 * of copying into fresh pages (~0.55 ms per MiB measured on these machines).
 */
export const SNAPSHOT_STEP_BYTES = 2 << 20;

/** A snapshot given up because the events it holds may never be durable. */
export class SnapshotAbandonedError extends Error {
  override name = 'SnapshotAbandonedError';
}

type SnapshotJob = {
  capture: ImageCapture;
  meta: SnapshotMeta;
  abandoned: SnapshotAbandonedError | null;
  /** Set while the job waits for its events to be durable. */
  wake: (() => void) | null;
};

/**
 * What every role of a copy shares: the core and where it stands in the
 * log. `durableStreamSeq`/`durableSeq` are the last stream message and event
 * known to be in the log; `expectStreamSeq` is what the primary's next append
 * expects (ahead of durable while appends are in flight). Snapshots are
 * written from here, one at a time, off the event loop.
 */
export class CopyState {
  core!: AuctionCore;
  expectStreamSeq = 0;
  durableStreamSeq = 0;
  durableSeq = 0;
  /**
   * The msg id of the log message at `expectStreamSeq`, which the primary's
   * next append names as the one it follows. Set where serving begins (the
   * takeover's fence, a resync's rebuild) and by each append; a follower
   * never appends, so applying the log leaves it alone.
   */
  expectMsgId: string | undefined = undefined;
  /**
   * The newest time (this copy's clock) the log is known to have been this
   * copy's: when an append it sent and the log acknowledged was sent, or
   * when a resync asked for the tail and found only its own writes after its
   * last durable one. A primary whose lease renewals fail serves on while
   * this stays within a TTL (replica/lease.ts).
   */
  logOursAt = 0;
  eventsSinceSnapshot = 0;
  lastSnapshotAt = 0;
  /** Appends and events acknowledged while this copy served, since it started (status, benchmarks). */
  appendsAcked = 0;
  eventsAcked = 0;
  /** The newest snapshot written or loaded by this copy. */
  snapshot: ShardCopyStatus['snapshot'] = null;
  /**
   * Follower lag: stream messages not applied yet (exact), events in them
   * (estimated from the mean events per message so far) and how old the
   * newest applied batch was when applied (0 when caught up).
   */
  lag = { messagesBehind: 0, eventsBehindEstimate: 0, msBehind: 0 };
  /** The snapshot being taken or written, if any. */
  snapshotWriting: Promise<void> | null = null;
  private snapshotJob: SnapshotJob | null = null;

  constructor(
    readonly shard: number,
    readonly config: CoreConfig,
    private readonly log: ShardLogPort,
    private readonly snapshots: SnapshotPort,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Every decided event is in the log: nothing undecided would be lost by a snapshot or a stop. */
  get settled(): boolean {
    return this.durableSeq === this.core.lastSeq;
  }

  /** A batch read from the log (following, catching up): applied and checked against its logged outcomes. */
  applyLogged(streamSeq: number, batch: LogBatch): void {
    replayBatch(this.core, batch);
    this.expectStreamSeq = streamSeq;
    this.markDurable(streamSeq, this.core.lastSeq);
    this.eventsSinceSnapshot += batch.events.length;
  }

  /** Applies whatever the log holds beyond our position. */
  async catchUp(isCurrent: () => boolean): Promise<void> {
    const last = await this.log.lastStreamSeq();
    this.expectLogReaches(last, this.durableStreamSeq, 'this copy applied');
    for await (const { streamSeq, batch } of this.log.read(this.durableStreamSeq, last)) {
      if (!isCurrent()) return;
      if (streamSeq <= this.durableStreamSeq) continue;
      this.applyLogged(streamSeq, batch);
    }
  }

  /** Throws LogLostError unless the log reaches `known` (a position this copy saw durable). */
  expectLogReaches(last: number, known: number, what: string): void {
    if (last < known)
      throw new LogLostError(
        `shard ${this.shard}: the log ends at stream message ${last}, but ${what} up to ${known}: acknowledged messages are gone`,
      );
  }

  /**
   * Rebuilds the core from the newest snapshot plus the log's tail, every
   * logged command decided again and checked. With `mine`, a batch written
   * by another writer after our last durable one means we were deposed while
   * our append's outcome was unknown (DeposedError). Returns false, with
   * nothing changed, when `isCurrent` says the caller's role ended meanwhile.
   */
  async rebuild(mine?: string, isCurrent: () => boolean = () => true): Promise<boolean> {
    this.abandonUndurableSnapshot('the copy rebuilds from the log');
    const loaded = this.snapshots.loadNewest(this.config, (file, error) =>
      this.logger.warn({ file, err: error }, 'skipping unreadable snapshot'),
    );
    const core = loaded?.core ?? new AuctionCore({ shard: this.shard, ...this.config });
    const streamSeq = loaded?.meta.streamSeq ?? 0;
    if (loaded) {
      this.logger.info(loaded.meta, 'loaded snapshot');
      this.snapshot = { at: loaded.writtenAt, ...loaded.meta };
    }
    const askedAt = this.clock.now();
    const last = await this.log.lastStreamSeq();
    // A log shorter than what we knew durable lost acknowledged messages (make chaos SEED=401: a JetStream
    // leader elected after a kill had 1,564 of 3,105 messages). Replaying the rest from the start, as this
    // once did, served a history that contradicted 618 acknowledged bids.
    this.expectLogReaches(last, streamSeq, 'the newest snapshot holds');
    this.expectLogReaches(last, this.durableStreamSeq, 'this copy applied');
    const ourLastDurable = this.durableStreamSeq;
    // From one message before the snapshot's position at most: the last message's writer names the msg id to chain onto.
    let lastWriter: string | undefined;
    for await (const { streamSeq: at, batch } of this.log.read(Math.max(0, Math.min(streamSeq, last - 1)), last)) {
      if (!isCurrent()) return false;
      if (mine !== undefined && at > ourLastDurable && batch.writer !== mine) {
        throw new DeposedError(`shard ${this.shard}: stream message ${at} was written by ${batch.writer}`);
      }
      replayBatch(core, batch);
      lastWriter = batch.writer;
    }
    this.core = core;
    if (mine !== undefined) this.logOursAt = askedAt;
    this.expectMsgId = lastWriter === undefined ? undefined : logMsgId(this.shard, last, lastWriter);
    this.expectStreamSeq = last;
    this.durableStreamSeq = last;
    this.durableSeq = core.lastSeq;
    // A replayed tail is worth a snapshot at the next periodic check.
    this.eventsSinceSnapshot = last > (loaded?.meta.streamSeq ?? 0) ? 1 : 0;
    this.lastSnapshotAt = this.clock.now();
    return true;
  }

  /**
   * Begins a snapshot of the state as it is now. The image is copied in
   * steps of SNAPSHOT_STEP_BYTES, one per event-loop turn, while the copy goes
   * on deciding (engine/core/image-capture.ts), so a primary need not stop for
   * its appends in flight: the file is written only once the log holds every
   * event in it (a snapshot must never hold an event the log might lack), and
   * given up if that may never happen (abandonUndurableSnapshot). `done`
   * hears when it is durable, or why not; `stallMs` is the longest the event
   * loop was held for it at once (the capture's start, a step, the hand-off
   * to the writer).
   */
  takeSnapshot(
    done: (
      outcome: { snapshot: NonNullable<ShardCopyStatus['snapshot']>; ms: number; stallMs: number } | { error: Error },
    ) => void = () => {},
  ): void {
    const started = this.clock.now();
    const events = this.eventsSinceSnapshot;
    this.eventsSinceSnapshot = 0;
    this.lastSnapshotAt = started;
    const job: SnapshotJob = {
      capture: this.core.beginImage(),
      meta: { lastSeq: this.core.lastSeq, streamSeq: this.expectStreamSeq },
      abandoned: null,
      wake: null,
    };
    this.snapshotJob = job;
    const startMs = this.clock.now() - started;
    this.snapshotWriting = this.writeSnapshot(job, startMs)
      .then(
        (stallMs) => {
          const ms = this.clock.now() - started;
          this.snapshot = { at: started, ...job.meta };
          this.logger.info({ ...job.meta, ms, stallMs }, 'snapshot written');
          done({ snapshot: this.snapshot, ms, stallMs });
        },
        (error: unknown) => {
          this.eventsSinceSnapshot += events; // due again
          if (error instanceof SnapshotAbandonedError)
            this.logger.info({ ...job.meta, reason: error.message }, 'snapshot given up');
          else this.logger.error({ err: error }, 'snapshot failed');
          done({ error: error as Error });
        },
      )
      .finally(() => {
        this.snapshotWriting = null;
        if (this.snapshotJob === job) this.snapshotJob = null;
      });
  }

  /**
   * Events decided up to `seq` (stream message `streamSeq`) are in the log. A
   * snapshot waiting for them is written now.
   */
  markDurable(streamSeq: number, seq: number): void {
    this.durableStreamSeq = streamSeq;
    this.durableSeq = seq;
    const job = this.snapshotJob;
    if (job?.wake && job.meta.lastSeq <= seq) job.wake();
  }

  /**
   * The events a snapshot in progress holds beyond the durable ones may never
   * reach the log (the primary ended with appends in flight, or the copy
   * rebuilds from the log): that snapshot is given up. One whose events are
   * all durable goes on: it is a true state of the log.
   */
  abandonUndurableSnapshot(reason: string): void {
    const job = this.snapshotJob;
    if (!job || job.abandoned || job.meta.lastSeq <= this.durableSeq) return;
    job.abandoned = new SnapshotAbandonedError(reason);
    job.capture.end();
    job.wake?.();
  }

  /** Copies the image a step per turn, waits for its events to be durable, writes it; resolves with the longest hold. */
  private async writeSnapshot(job: SnapshotJob, startMs: number): Promise<number> {
    let stallMs = startMs;
    const check = (): void => {
      if (job.abandoned) throw job.abandoned;
    };
    while (!job.capture.done) {
      await new Promise<void>((resolve) => this.clock.soon(resolve));
      check();
      const at = this.clock.now();
      job.capture.step(SNAPSHOT_STEP_BYTES);
      stallMs = Math.max(stallMs, this.clock.now() - at);
    }
    if (this.durableSeq < job.meta.lastSeq) {
      await new Promise<void>((resolve) => {
        job.wake = resolve;
      });
      job.wake = null;
    }
    check();
    const at = this.clock.now();
    const saving = this.snapshots.save(job.capture.image(), job.meta);
    stallMs = Math.max(stallMs, this.clock.now() - at);
    await saving;
    return stallMs;
  }

  /** On a clean stop: the newest state on disk, so a restart replays little. */
  async snapshotIfWorthIt(): Promise<void> {
    await this.snapshotWriting;
    if (!this.settled || this.eventsSinceSnapshot === 0) return;
    this.takeSnapshot();
    await this.snapshotWriting;
  }
}
