import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  shardOfAuction,
  WIRE_LIMITS,
  type AuctionState,
  type BidOutcome,
  type EngineClient,
  decodeLog,
  type LifecycleOutcome,
  type LogEvent,
} from '../../protocol/index.js';
import { isBinaryBatch } from '../../protocol/binary/header.js';
import { LogBatchView } from '../../protocol/binary/log-format.js';
import type { Auction, LiveState } from '../../protocol/public.js';
import { ApiError } from '../errors.js';
import { MissCache } from '../miss-cache.js';
import { liveFromAuction, liveFromEngine, livePatch, livePatchOfBid, type LivePatch } from '../public-shapes.js';
import { AuditClient } from '../read-model/audit-client.js';
import { EngineStates } from '../read-model/engine-states.js';
import { ShardStreams } from './shards.js';

type Entry = {
  state: LiveState | null;
  watchers: number;
  /** Changes seen while the first state was being fetched; applied on top of it. */
  early: LivePatch[];
  ready: Promise<LiveState | null>;
};

/** Patches kept per auction while its first state is fetched; past it the fetch is simply repeated. */
const EARLY_PATCHES_MAX = 1_024;
/** Watched auctions read again per request after a reset (the engine's `states` limit). */
const REFETCH_BATCH = WIRE_LIMITS.requestCommandsMax;

export type LiveFeedOptions = {
  nc: NatsConnection;
  jsm: JetStreamManager;
  engines: EngineClient;
  logger: Logger;
  /** Called once per turn of the event loop with every watched auction that changed (conflated: latest state only). */
  onStates: (states: LiveState[]) => void;
  /** Auctions watched at once in this gateway at most. */
  watchedMax?: number;
  queryTimeoutMs?: number;
  /** How long an auction or shard found missing is answered as missing without asking again. */
  missTtlMs?: number;
  /** A new primary fenced the shard's log (a takeover or hand-over): commands in flight to the old one may be lost. */
  onFence?: (shard: number) => void;
};

/**
 * Live auction states for one gateway. Follows every shard's stream
 * (ShardStreams) and keeps the state of each watched auction: fetched once
 * from the shard's primary (answered only when durable), then advanced by
 * each event whose version is newer. Unwatched auctions cost nothing.
 */
export class LiveFeed {
  private readonly entries = new Map<number, Entry>();
  private readonly dirty = new Set<number>();
  private flushScheduled = false;
  private stopped = false;
  private readonly watchedMax: number;
  private readonly missingAuctions: MissCache<number>;
  private readonly shards: ShardStreams;
  private readonly engineStates: EngineStates;
  private readonly audit: AuditClient;

  constructor(private readonly o: LiveFeedOptions) {
    this.watchedMax = o.watchedMax ?? 1_000_000;
    this.missingAuctions = new MissCache(o.missTtlMs ?? 1_000);
    this.engineStates = new EngineStates(o.engines);
    this.audit = new AuditClient(o.nc, o.queryTimeoutMs ?? 2_000);
    this.shards = new ShardStreams({
      nc: o.nc,
      jsm: o.jsm,
      logger: o.logger,
      missTtlMs: o.missTtlMs ?? 1_000,
      onBatch: (batch) => this.onBatch(batch),
      onReset: (shard) => this.refetchShard(shard),
    });
  }

  /** Follows every shard stream that exists now, and any created later. */
  start(): Promise<void> {
    return this.shards.start();
  }

  stop(): void {
    this.stopped = true;
    this.shards.stop();
  }

  get watched(): number {
    return this.entries.size;
  }

  /** Whether the shard has a stream (it is then followed from now on). Unknown shards hold no auctions. */
  hasShard(shard: number): Promise<boolean> {
    return this.shards.hasShard(shard);
  }

  /** Shards whose streams this gateway follows (every shard that exists, within a few seconds). */
  knownShards(): number[] {
    return this.shards.knownShards();
  }

  /** Per followed shard, the last stream message applied. */
  positions(): Record<number, number> {
    return this.shards.positions();
  }

  /** The auction was found missing a moment ago (nothing need be asked about it again yet). */
  knownMissing(auctionId: number): boolean {
    return this.missingAuctions.has(auctionId);
  }

  /** The auction exists now (this gateway created it): read your own writes at once. */
  forgetMissing(auctionId: number): void {
    this.missingAuctions.forget(auctionId);
  }

  /** The clock a look-up reads when it starts, for `noteMissing`. */
  lookupStarted(): number {
    return this.missingAuctions.now();
  }

  /**
   * A look-up that started at `startedAt` found the auction missing in both
   * the engine and the read model: later look-ups answer that at once for a
   * while (unless it was created since the look-up started).
   */
  noteMissing(auctionId: number, startedAt: number): void {
    this.missingAuctions.add(auctionId, startedAt);
  }

  /**
   * Starts watching an auction: its current state (null when no such
   * auction exists). Every `watch` must be paired with one `unwatch`.
   */
  async watch(auctionId: number): Promise<LiveState | null> {
    let entry = this.entries.get(auctionId);
    if (!entry) {
      if (this.missingAuctions.has(auctionId)) return null;
      if (this.entries.size >= this.watchedMax)
        throw new ApiError('unavailable', 'this gateway watches too many auctions');
      const created: Entry = { state: null, watchers: 0, early: [], ready: Promise.resolve(null) };
      created.ready = this.fetchInto(auctionId, created);
      this.entries.set(auctionId, created);
      entry = created;
    }
    entry.watchers++;
    try {
      const state = await entry.ready;
      if (!state) this.unwatch(auctionId);
      return state;
    } catch (error) {
      this.unwatch(auctionId);
      throw error;
    }
  }

  unwatch(auctionId: number): void {
    const entry = this.entries.get(auctionId);
    if (!entry) return;
    if (--entry.watchers <= 0) this.entries.delete(auctionId);
  }

  /** Whether this gateway watches the auction already (its state is here or on its way). */
  watching(auctionId: number): boolean {
    return this.entries.has(auctionId);
  }

  /** The state if this gateway watches the auction (for overlaying fresher data on the read model). */
  current(auctionId: number): LiveState | null {
    return this.entries.get(auctionId)?.state ?? null;
  }

  // --- first state -------------------------------------------------------------

  private async fetchInto(auctionId: number, entry: Entry): Promise<LiveState | null> {
    const shard = shardOfAuction(auctionId);
    const startedAt = this.missingAuctions.now();
    // Follow first, then ask: every event after the answer is then certain to arrive.
    if (!(await this.shards.follow(shard))) return null;
    for (let attempt = 0; ; attempt++) {
      const fetched = await this.fetchState(shard, auctionId);
      if (fetched === 'unknown') return null; // not found for now, but nobody said it does not exist
      if (!fetched) {
        this.missingAuctions.add(auctionId, startedAt);
        return null;
      }
      if (entry.early.length > EARLY_PATCHES_MAX && attempt < 3) {
        entry.early = [];
        continue;
      }
      let state = fetched;
      for (const patch of entry.early) if (patch.version > state.version) state = { ...state, ...patch };
      entry.early = [];
      entry.state = state;
      return state;
    }
  }

  /**
   * The primary's durable state, or the read model's for an auction the
   * engine no longer holds; null when neither has it, 'unknown' when the
   * engine does not hold it and the read model did not answer.
   */
  private async fetchState(shard: number, auctionId: number): Promise<LiveState | null | 'unknown'> {
    const state = await this.engineStates.one(auctionId);
    return state ? liveFromEngine(state) : this.fromReadModel(shard, auctionId);
  }

  private async fromReadModel(shard: number, auctionId: number): Promise<LiveState | null | 'unknown'> {
    try {
      const reply = await this.audit.ask(shard, { op: 'auction', auctionId });
      // A read model that answered with an error has no auction to show.
      const { auction } = reply as { auction?: Auction | null };
      return auction ? liveFromAuction(auctionId, auction) : null;
    } catch {
      // No read model reachable: the engine, which answered, does not know the auction, but an
      // ended one may still exist in the read model.
      return 'unknown';
    }
  }

  // --- after a reset -------------------------------------------------------------

  /**
   * The shard's follower skipped a gap too large to read back: every watched
   * auction of the shard may have missed changes, so each is read again
   * (after the skip, the follower being live already), a batch of ids per
   * request; a fresher state than the one held replaces it.
   */
  private refetchShard(shard: number): void {
    const ids = [...this.entries.keys()].filter((id) => shardOfAuction(id) === shard);
    void (async () => {
      for (let i = 0; i < ids.length && !this.stopped; i += REFETCH_BATCH) {
        const batch = ids.slice(i, i + REFETCH_BATCH);
        let states: (AuctionState | null)[] | undefined;
        try {
          states = await this.engineStates.many(shard, batch);
        } catch (error) {
          this.o.logger.warn(
            { err: error, shard, auctions: batch.length },
            'cannot read watched auctions again after a reset; they catch up with their next change',
          );
          continue;
        }
        for (const [k, auctionId] of batch.entries()) {
          const entry = this.entries.get(auctionId);
          if (!entry) continue;
          const engine = states?.[k];
          const modelled = engine ? null : await this.fromReadModel(shard, auctionId).catch(() => null);
          const fresh = engine ? liveFromEngine(engine) : typeof modelled === 'object' ? modelled : null; // not an 'unknown' answer
          // A first state still on its way may predate the skip: it is read again once it is in.
          if (!entry.state) await entry.ready.catch(() => null);
          if (fresh && this.entries.get(auctionId) === entry && entry.state && fresh.version > entry.state.version) {
            entry.state = fresh;
            this.markDirty(auctionId);
          }
        }
      }
    })().catch((error: unknown) =>
      this.o.logger.error({ err: error, shard }, 'reading watched auctions again after a reset failed'),
    );
  }

  // --- the hot path: batches of the log ------------------------------------------------

  /**
   * A binary batch is read in place: for each bid record only its auction id
   * until the auction is one somebody watches, so a gateway pays next to
   * nothing for the bids on auctions nobody here looks at.
   */
  private onBatch(bytes: Uint8Array): void {
    if (!isBinaryBatch(bytes)) {
      const batch = decodeLog(bytes);
      if (batch.leader) this.o.onFence?.(batch.shard);
      for (const event of batch.events) this.onEvent(event);
      return;
    }
    const view = new LogBatchView(bytes);
    if (view.leader) this.o.onFence?.(view.shard);
    view.visit(
      (r) => {
        const auctionId = view.auctionId(r);
        const entry = this.entries.get(auctionId);
        if (!entry || !view.accepted(r)) return;
        this.apply(
          auctionId,
          entry,
          livePatchOfBid(
            view.price(r),
            view.leaderId(r),
            view.bidCount(r),
            view.endsAt(r),
            view.version(r),
            view.reserveMet(r),
          ),
        );
      },
      (event) => this.onEvent(event),
    );
  }

  private onEvent(event: LogEvent): void {
    const auctionId = event.outcome.auctionId;
    // A new auction may have an id someone asked about before it existed.
    if (event.command.type === 'create') this.missingAuctions.forget(auctionId);
    const entry = this.entries.get(auctionId);
    if (!entry || event.outcome.status !== 'accepted') return;
    const patch = livePatch(event.command.type, event.outcome as BidOutcome | LifecycleOutcome);
    if (patch) this.apply(auctionId, entry, patch);
  }

  private apply(auctionId: number, entry: Entry, patch: LivePatch): void {
    if (!entry.state) {
      entry.early.push(patch);
      return;
    }
    if (patch.version <= entry.state.version) return;
    entry.state = { ...entry.state, ...patch };
    this.markDirty(auctionId);
  }

  private markDirty(auctionId: number): void {
    this.dirty.add(auctionId);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const states: LiveState[] = [];
      for (const id of this.dirty) {
        const state = this.entries.get(id)?.state;
        if (state) states.push(state);
      }
      this.dirty.clear();
      if (states.length > 0) this.o.onStates(states);
    });
  }
}
