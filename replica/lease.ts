import type { Logger } from 'pino';
import { decode, encode } from '../protocol/index.js';
import type { LeaseValue } from '../protocol/cluster.js';
import { RevisionConflictError, type Cancel, type Clock, type LeaseBucketPort } from '../shard/ports.js';

/** What the holder's copy tells its lease about itself (see `keepRenewing`). */
export type HolderState = {
  /** The copy decides commands now (serving, stepping down); false while it resyncs or takes over. */
  deciding(): boolean;
  /** The newest time the log is known to have been the copy's (CopyState.logOursAt). */
  logOursAt(): number;
};

/**
 * Leadership of one shard: a key in the KV bucket, written with revision
 * compare-and-set. The holder renews it every `renewMs`; the others watch it
 * and judge it expired when they have seen no renewal for `ttlMs` of their
 * own clock (no clock comparison across machines) while the bucket took
 * their own writes (LeaseBucketProbe): a bucket electing a leader silences
 * every holder, and says nothing about them.
 *
 * A holder that could not renew for `ttlMs` stops serving by itself, unless
 * the shard's log acknowledged an append it sent within that TTL: then the
 * log is still its own (nobody's fence came in between), and nobody can take
 * the lease while the bucket refuses writes anyway. A holder that decides
 * nothing (resyncing) keeps it through failed renewals. It stops at once when
 * the key names another writer.
 *
 * The lease only decides who should write; safety comes from the stream's
 * expected sequence, which fences out a writer that lost the lease and has
 * not noticed yet (docs/replica.md, "An old primary that wakes up").
 */
export class ShardLease {
  readonly key: string;
  private revision = 0;
  private lastSeen: { revision: number; value: LeaseValue | null; localAt: number } | null = null;
  private lastRenewedAt = 0;
  private watching: { stop(): void } | null = null;
  private renewTimer: Cancel | null = null;
  /** The renewal on its way to the bucket, if any: a hand-over or release must not race it. */
  private renewal: Promise<void> | null = null;
  /** What keepRenewing was told to call when the lease is gone. */
  private onLost: ((why: string) => void) | null = null;
  /** Renewals have failed for a TTL and the log's acknowledgements keep the holder serving (logged once per spell). */
  private servingOnLog = false;

  constructor(
    private readonly kv: LeaseBucketPort,
    private readonly clock: Clock,
    readonly shard: number,
    private readonly me: { engineId: string; writer: string },
    private readonly ttlMs: number,
    private readonly renewMs: number,
    private readonly logger: Logger,
    /** This copy's last stream message known durable, written with every value (LeaseValue.streamSeq). */
    private readonly durableStreamSeq: () => number,
  ) {
    this.key = `shard.${shard}`;
  }

  get held(): boolean {
    return this.revision > 0;
  }

  /** The current holder as last seen (null: none). */
  get holder(): LeaseValue | null {
    return this.lastSeen?.value ?? null;
  }

  /** Starts following the key; resolves once its current value is known. */
  async watch(): Promise<void> {
    const entry = await this.kv.get(this.key);
    this.observe(entry?.revision ?? 0, entry?.value ?? null);
    this.watching = await this.kv.watch(this.key, (e) => this.observe(e.revision, e.value));
  }

  /**
   * Nobody holds it, its holder has not renewed for a whole TTL while the
   * bucket took this process's writes, or its holder is this very engine:
   * an earlier incarnation (same engine id, another process), dead since an
   * engine id owns one data directory, or this writer itself, which let the
   * lease go at its TTL and may take it back at once (a compare-and-set at
   * the revision it last saw: if anyone wrote since, that fails). A primary
   * whose NATS node died stopped at its TTL, still reconnecting, and then
   * waited for the bucket's election and a whole TTL more like any standby
   * (make chaos SEED=401: 7 s for a shard whose log was fine).
   */
  expired(): boolean {
    if (this.held) return false;
    const seen = this.lastSeen;
    if (!seen || seen.value === null) return true;
    if (seen.value.engineId === this.me.engineId) return true;
    const writableSince = this.kv.writableSince();
    return writableSince !== null && this.clock.now() - Math.max(seen.localAt, writableSince) > this.ttlMs;
  }

  /** Takes the lease if it is free or expired; true when this engine now holds it. */
  async acquire(): Promise<boolean> {
    if (this.held) return true;
    if (!this.expired()) return false;
    const value = this.value();
    try {
      const seen = this.lastSeen;
      this.revision =
        seen && seen.revision > 0
          ? await this.kv.update(this.key, value, seen.revision)
          : await this.kv.create(this.key, value);
      this.lastRenewedAt = this.clock.now();
      return true;
    } catch (error) {
      this.logger.info({ err: (error as Error).message }, 'lease not acquired');
      // Someone wrote the key since we last saw it (a renewal our watch missed, while it restarts after the
      // bucket's election): read it, so that the next judgement starts from that renewal.
      if (error instanceof RevisionConflictError) {
        const entry = await this.kv.get(this.key).catch(() => null);
        if (entry) this.observe(entry.revision, entry.value);
      }
      return false;
    }
  }

  /**
   * Renews every renewMs; `onLost` runs once when the lease is gone: taken
   * (a renewal's conflict, or the watch shows another writer), or not
   * renewed for a TTL while the copy decided commands and the log
   * acknowledged no append it sent within that TTL. A copy that decides
   * nothing keeps the lease however long renewals fail: giving it up only
   * handed the shard to a standby once the bucket had a leader again, after
   * the copy's own resync could have served (make chaos SEED=301: a NATS kill
   * took a shard log's and the bucket's leaders; the resyncing primary was
   * deposed at its TTL and the shard served again 1.1 s after the log's
   * election, through a takeover). Standbys still take over from a holder
   * that stays silent while the bucket takes their writes.
   */
  keepRenewing(onLost: (why: string) => void, holder: HolderState): void {
    this.stopRenewing();
    this.onLost = onLost;
    let renewing = false;
    this.renewTimer = this.clock.every(this.renewMs, () => {
      if (renewing || !this.held) return;
      const now = this.clock.now();
      if (now - this.lastRenewedAt > this.ttlMs) {
        if (holder.deciding() && now - holder.logOursAt() > this.ttlMs) {
          this.lose(onLost, 'lease not renewed within its ttl');
          return;
        }
        if (!this.servingOnLog)
          this.logger.warn(
            { notRenewedForMs: now - this.lastRenewedAt },
            holder.deciding()
              ? 'lease not renewed within its ttl; serving on, the log still takes our appends'
              : 'lease not renewed within its ttl; kept while the copy decides nothing',
          );
        this.servingOnLog = true;
      }
      renewing = true;
      this.renewal = this.kv
        .update(this.key, this.value(), this.revision, this.renewMs)
        .then((revision) => {
          if (!this.held) return;
          this.revision = revision;
          this.lastRenewedAt = this.clock.now();
          if (this.servingOnLog) this.logger.info('lease renewed again');
          this.servingOnLog = false;
        })
        .catch(async (error: unknown) => {
          // A revision mismatch means someone else holds it now, unless the key holds our own
          // write: an update that timed out here but was applied (seen under overload). Other
          // errors are retried until the TTL.
          if (!(error instanceof RevisionConflictError) || !this.held) return;
          const entry = await this.kv.get(this.key).catch(() => null);
          const value = entry?.value && entry.value.length > 0 ? (decode(entry.value) as LeaseValue) : null;
          if (entry && value?.writer === this.me.writer) this.revision = entry.revision;
          else this.lose(onLost, 'lease taken by another engine');
        })
        .finally(() => {
          renewing = false;
          this.renewal = null;
        });
    });
  }

  /** Gives the lease up for a clean hand-over (the next holder need not wait for the TTL). */
  async release(): Promise<void> {
    this.stopRenewing();
    await this.renewal;
    if (!this.held) return;
    const revision = this.revision;
    this.revision = 0;
    await this.kv
      .delete(this.key, revision)
      .catch((error: unknown) => this.logger.warn({ err: error }, 'lease release failed'));
  }

  /**
   * Hands the lease to another engine: the key names it with no live writer,
   * which that engine reads as "an earlier incarnation of mine held it" and
   * takes at once; any other engine still waits a whole TTL.
   */
  async handOver(engineId: string): Promise<void> {
    this.stopRenewing();
    // A renewal already sent moves the revision: writing with the one from before it would fail as a
    // conflict, and the step-down with it (seen under load: "wrong last sequence", the primary deposed).
    await this.renewal;
    if (!this.held) throw new Error(`lease ${this.key} is not held`);
    const revision = this.revision;
    this.revision = 0;
    await this.kv.update(
      this.key,
      encode({
        engineId,
        writer: 'hand-over',
        renewedAt: this.clock.now(),
        streamSeq: this.durableStreamSeq(),
      } satisfies LeaseValue),
      revision,
    );
  }

  /** Forget holding it without touching the key (after a fence or a crash of the role). */
  drop(): void {
    this.stopRenewing();
    this.revision = 0;
  }

  close(): void {
    this.stopRenewing();
    this.watching?.stop();
  }

  private lose(onLost: (why: string) => void, why: string): void {
    if (!this.held) return;
    this.drop();
    onLost(why);
  }

  private stopRenewing(): void {
    this.renewTimer?.();
    this.renewTimer = null;
    this.onLost = null;
    this.servingOnLog = false;
  }

  private value(): Uint8Array {
    return encode({
      engineId: this.me.engineId,
      writer: this.me.writer,
      renewedAt: this.clock.now(),
      streamSeq: this.durableStreamSeq(),
    } satisfies LeaseValue);
  }

  /**
   * Only a newer revision is a renewal. A watch that restarts (its consumer
   * reset after a NATS node's loss, or after missed heartbeats in a starved
   * process) delivers the current entry again: taking that for a renewal
   * made a lease nobody renewed look alive as long as the watch kept
   * restarting (make chaos SEED=101: shard 1 unserved for 100 s, both
   * replicas waiting on a dead holder).
   */
  private observe(revision: number, data: Uint8Array | null): void {
    if (this.lastSeen && revision > 0 && revision <= this.lastSeen.revision) return;
    let value: LeaseValue | null = null;
    if (data && data.length > 0) {
      try {
        value = decode(data) as LeaseValue;
      } catch {
        value = null;
      }
    }
    this.lastSeen = { revision, value, localAt: this.clock.now() };
    // A revision after ours that another writer made: the lease was taken (a holder serving on its log's
    // acknowledgements learns it here, before its next append meets the fence).
    if (this.held && this.onLost && revision > this.revision && value?.writer !== this.me.writer)
      this.lose(this.onLost, 'lease taken by another engine');
  }
}
