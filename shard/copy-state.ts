import type { Logger } from 'pino';
import { AuctionCore } from '../engine/core/index.js';
import type { LogBatch } from '../protocol/index.js';
import type { ShardCopyStatus } from '../protocol/cluster.js';
import { DeposedError, LogLostError, logMsgId, type Clock, type ShardLogPort, type SnapshotPort } from './ports.js';
import { replayBatch } from './replay.js';

export type CoreConfig = { auctionsMax: number; idempotencyEntriesMax: number };

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
  /** The snapshot file being written, if any. */
  snapshotWriting: Promise<void> | null = null;

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
    this.durableStreamSeq = streamSeq;
    this.expectStreamSeq = streamSeq;
    this.durableSeq = this.core.lastSeq;
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
   * Only with nothing in flight: a snapshot must never hold an event the log
   * might lack. The image is taken now; the file is written off the event
   * loop, and `done` hears when it is durable (or why not). `heldSince`: when
   * the copy stopped deciding for it (a primary waits for its appends in
   * flight first); `stallMs` is from then to the image taken, the time the
   * shard decided nothing because of this snapshot.
   */
  takeSnapshot(
    done: (
      outcome: { snapshot: NonNullable<ShardCopyStatus['snapshot']>; ms: number; stallMs: number } | { error: Error },
    ) => void = () => {},
    heldSince = this.clock.now(),
  ): void {
    const started = this.clock.now();
    const events = this.eventsSinceSnapshot;
    this.eventsSinceSnapshot = 0;
    this.lastSnapshotAt = started;
    const saving = this.snapshots.save(this.core, this.durableStreamSeq);
    // save() copies the image before its first await: the event loop was held until here.
    const stallMs = this.clock.now() - heldSince;
    this.snapshotWriting = saving
      .then(
        (meta) => {
          const ms = this.clock.now() - started;
          this.snapshot = { at: started, ...meta };
          this.logger.info({ ...meta, ms, stallMs }, 'snapshot written');
          done({ snapshot: this.snapshot, ms, stallMs });
        },
        (error: unknown) => {
          this.eventsSinceSnapshot += events; // due again
          this.logger.error({ err: error }, 'snapshot failed');
          done({ error: error as Error });
        },
      )
      .finally(() => {
        this.snapshotWriting = null;
      });
  }

  /** On a clean stop: the newest state on disk, so a restart replays little. */
  async snapshotIfWorthIt(): Promise<void> {
    await this.snapshotWriting;
    if (!this.settled || this.eventsSinceSnapshot === 0) return;
    this.takeSnapshot();
    await this.snapshotWriting;
  }
}
