import type { Logger } from 'pino';
import { InvariantError } from '../engine/core/index.js';
import type { CopyState } from '../shard/copy-state.js';
import type { SnapshotTurns } from '../shard/snapshot-turns.js';
import type { Cancel, Clock, LogFollower, ShardLogPort } from '../shard/ports.js';
import type { ShardLease } from './lease.js';

/** What a follower reports to its copy's queue; it never changes the copy's role itself. */
export type FollowerEvent =
  { kind: 'lease-expired' } | { kind: 'follower-died'; error: unknown } | { kind: 'fatal'; error: unknown };

export type FollowerOptions = {
  renewMs: number;
  snapshotEveryEvents: number;
  verify: boolean;
  /** Snapshots begin one shard of the process at a time (shard/snapshot-turns.ts). */
  snapshotTurns: SnapshotTurns;
};

/** How long a role change waits for the follower's consumer to stop (see `dispose`). */
export const DISPOSE_WAIT_MS = 1_000;

/**
 * A consumer that has delivered nothing for this long while the lease's
 * holder says the log is ahead of the copy is given up and opened again.
 * `make bench-scale` found ordered consumers that stopped delivering for
 * good, with no error or end, under a bid load on four shards per process:
 * half the standbys stuck at the messages they had, reporting no lag, for
 * minutes (nats.js asked the consumer's info after missed heartbeats, which
 * the engine's NATS user could not, and retried forever; that permission is
 * granted now, this catches whatever else stalls a consumer). A healthy
 * consumer delivers within a pull's expiry (PULL_EXPIRES_MS) and notices a
 * dead pull in two of its heartbeats.
 */
export const STALLED_CONSUMER_MS = 5_000;

/**
 * The resources of the `following` role: a consumer of the shard's log
 * applying every batch as it lands (a hot standby), and a watchdog on the
 * lease. Opening the consumer is retried while JetStream elects a stream
 * leader, the watchdog running all the while (a shard left following with no
 * consumer and no watchdog would never serve again: commit 8c813f0).
 */
export class Follower {
  private watchdog: Cancel | null = null;
  private consumer: LogFollower | null = null;
  private reading: Promise<void> = Promise.resolve();
  private disposed = false;
  /** Ends the current wait at once (dispose must not wait for a retry's sleep). */
  private wake: (() => void) | null = null;
  private readonly followed = { messages: 0, events: 0 };
  /** The last time the copy was at the log's end as the holder reports it, or the consumer delivered a batch. */
  private progressAt = 0;

  constructor(
    private readonly state: CopyState,
    private readonly log: ShardLogPort,
    private readonly lease: ShardLease,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly options: FollowerOptions,
    private readonly report: (event: FollowerEvent) => void,
  ) {}

  /** `delayMs`: open the consumer only after this long (a consumer that just died). */
  start(delayMs = 0): void {
    this.progressAt = this.clock.now() + delayMs;
    this.watchdog = this.clock.every(Math.max(10, Math.floor(this.options.renewMs / 2)), () => {
      if (this.lease.expired()) {
        // Once: the copy leaves following for taking-over, and a failed takeover starts a new follower.
        this.watchdog?.();
        this.watchdog = null;
        this.report({ kind: 'lease-expired' });
        return;
      }
      this.checkDelivering();
    });
    this.reading = this.read(delayMs);
  }

  /** Reports the follower dead when its consumer has stalled behind the log (STALLED_CONSUMER_MS). */
  private checkDelivering(): void {
    const now = this.clock.now();
    const logAt = this.lease.holder?.streamSeq ?? 0;
    if (!this.consumer || logAt <= this.state.durableStreamSeq) {
      this.progressAt = Math.max(this.progressAt, now);
      return;
    }
    if (now - this.progressAt <= STALLED_CONSUMER_MS) return;
    this.watchdog?.();
    this.watchdog = null;
    const error = new Error(
      `the log consumer delivered nothing for ${now - this.progressAt} ms while the log is at stream message ${logAt} and the copy at ${this.state.durableStreamSeq}`,
    );
    this.disposed = true; // this consumer's loop must not apply anything once the next one reads
    void this.consumer.stop().catch(() => undefined);
    this.report({ kind: 'follower-died', error });
  }

  /** Stops the watchdog and the consumer; resolves once nothing of this follower runs. */
  /**
   * Stops the watchdog and the consumer. Waits for them at most
   * DISPOSE_WAIT_MS: the copy changes roles only once this resolves, and a
   * consumer that cannot close (nats.js recreating an ordered consumer on a
   * stream without a leader) would hold the copy in `following` for good,
   * every later event queued behind it, as make chaos seeds 103 and 105 saw
   * (copies silent for a minute while their shard had no primary). Nothing of
   * this follower touches the copy's state once disposed: the reading loop
   * checks `disposed` before each batch.
   */
  async dispose(): Promise<void> {
    this.disposed = true;
    this.watchdog?.();
    this.watchdog = null;
    this.wake?.();
    const stopped = (async () => {
      await this.consumer
        ?.stop()
        .catch((error: unknown) => this.logger.warn({ err: error }, 'closing the log consumer failed'));
      await this.reading;
    })();
    let cancel: () => void = () => undefined;
    const gaveUp = await Promise.race([
      stopped.then(() => false),
      new Promise<boolean>((resolve) => (cancel = this.clock.after(DISPOSE_WAIT_MS, () => resolve(true)))),
    ]);
    cancel();
    if (gaveUp) this.logger.warn({ waitedMs: DISPOSE_WAIT_MS }, 'the log consumer did not stop in time; going on');
  }

  private async read(delayMs: number): Promise<void> {
    if (delayMs > 0) await this.pause(delayMs);
    const consumer = await this.open();
    if (!consumer) return;
    try {
      for await (const { streamSeq, batch, pending } of consumer.messages) {
        if (this.disposed) break;
        if (streamSeq <= this.state.durableStreamSeq) continue;
        this.state.applyLogged(streamSeq, batch);
        this.progressAt = this.clock.now();
        if (this.options.verify) this.state.core.verify();
        this.followed.messages += 1;
        this.followed.events += batch.events.length;
        this.state.lag = {
          messagesBehind: pending,
          eventsBehindEstimate: Math.round((pending * this.followed.events) / this.followed.messages),
          msBehind: pending === 0 ? 0 : Math.max(0, this.clock.now() - batch.t),
        };
        if (
          this.state.eventsSinceSnapshot >= this.options.snapshotEveryEvents &&
          !this.state.snapshotWriting &&
          this.options.snapshotTurns.take(this.state.shard, this.clock.now(), this.state.lastSnapshotAt)
        )
          this.state.takeSnapshot();
      }
      // The consumer ended without an error (closed under us): read again from where we are.
      if (!this.disposed) this.report({ kind: 'follower-died', error: new Error('the log consumer ended') });
    } catch (error) {
      if (this.disposed) return;
      this.report(error instanceof InvariantError ? { kind: 'fatal', error } : { kind: 'follower-died', error });
    }
  }

  /** Opens the consumer from the copy's position, retrying until it opens or the follower is disposed. */
  private async open(): Promise<LogFollower | null> {
    for (let attempt = 1; !this.disposed; attempt++) {
      try {
        const consumer = await this.log.follow(this.state.durableStreamSeq);
        if (this.disposed) {
          await consumer.stop();
          return null;
        }
        this.consumer = consumer;
        return consumer;
      } catch (error) {
        if (this.disposed) return null;
        this.logger.warn({ err: error, attempt }, 'cannot read the shard stream yet; retrying');
        await this.pause(Math.min(1_000, 50 * attempt));
      }
    }
    return null;
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const cancel = this.clock.after(ms, () => this.wake?.());
      this.wake = () => {
        cancel();
        this.wake = null;
        resolve();
      };
    });
  }
}
