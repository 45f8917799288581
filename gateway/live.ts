import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  decode, decodeLog, encode, shardOfAuction, streamName, subjects, WIRE_LIMITS,
  type AuctionState, type BidOutcome, type EngineClient, type LifecycleOutcome, type LogBatch, type Status,
} from '../protocol/index.js';
import { auditSubject } from '../audit/shard-audit.js';
import { shardFollowSettings } from '../engine/log.js';
import { isStreamNotFound } from '../protocol/provisioning.js';
import { StreamFollower } from './stream-follower.js';
import { ApiError } from './errors.js';
import { MissCache } from './miss-cache.js';

/** The public live state of an auction (API.md `auction.state` without its `type`). */
export type LiveState = {
  auctionId: number;
  price: number;
  leaderId: number;
  bidCount: number;
  endsAt: number;
  status: Status;
  version: number;
  reserveMet: boolean;
  winnerId?: number;
};

type Patch = Partial<LiveState> & { version: number };

type Entry = {
  state: LiveState | null;
  watchers: number;
  /** Changes seen while the first state was being fetched; applied on top of it. */
  early: Patch[];
  ready: Promise<LiveState | null>;
};

/** Patches kept per auction while its first state is fetched; past it the fetch is simply repeated. */
const EARLY_PATCHES_MAX = 1_024;
const DISCOVER_EVERY_MS = 5_000;
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
};

/**
 * Live auction states for one gateway. Follows every shard's stream without
 * a consumer (gateway/stream-follower.ts: the batches the stream re-publishes
 * to `auction.logged.<n>`, only appended ones, in stream order, gaps read
 * back by direct gets) and keeps the state of each watched auction: fetched
 * once from the shard's primary (answered only when durable), then advanced
 * by each event whose version is newer. Unwatched auctions cost nothing.
 */
export class LiveFeed {
  private readonly entries = new Map<number, Entry>();
  private readonly shards = new Map<number, { ready: Promise<boolean>; follower: StreamFollower | null }>();
  /** Unknown shards being looked up in the stream names (one question per shard at a time). */
  private readonly lookups = new Map<number, Promise<boolean>>();
  private readonly followed = new Set<number>();
  private readonly dirty = new Set<number>();
  private flushScheduled = false;
  private discoverTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly watchedMax: number;
  private readonly missingAuctions: MissCache<number>;
  private readonly missingShards: MissCache<number>;

  constructor(private readonly o: LiveFeedOptions) {
    this.watchedMax = o.watchedMax ?? 1_000_000;
    this.missingAuctions = new MissCache(o.missTtlMs ?? 1_000);
    this.missingShards = new MissCache(o.missTtlMs ?? 1_000, 1_024);
  }

  /** Follows every shard stream that exists now, and any created later. */
  async start(): Promise<void> {
    await this.discover();
    this.discoverTimer = setInterval(() => void this.discover().catch((error: unknown) => this.o.logger.warn({ err: error }, 'stream discovery failed')), DISCOVER_EVERY_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.discoverTimer) clearInterval(this.discoverTimer);
    await Promise.all([...this.shards.values()].map((s) => s.follower?.stop()));
  }

  get watched(): number {
    return this.entries.size;
  }

  /**
   * Whether the shard has a stream (it is then followed from now on). Unknown
   * shards hold no auctions. A shard exists iff its stream is among the
   * stream names: asking costs no stream info or consumer per unknown shard.
   */
  hasShard(shard: number): Promise<boolean> {
    if (this.followed.has(shard)) return Promise.resolve(true);
    if (this.missingShards.has(shard)) return Promise.resolve(false);
    return this.follow(shard);
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

  /** Shards whose streams this gateway follows (every shard that exists, within a few seconds). */
  knownShards(): number[] {
    return [...this.followed].sort((a, b) => a - b);
  }

  /** Per followed shard, the last stream message applied. */
  positions(): Record<number, number> {
    return Object.fromEntries([...this.shards].flatMap(([shard, s]) => (s.follower ? [[shard, s.follower.lastSeq]] : [])));
  }

  /**
   * Starts watching an auction: its current state (null when no such
   * auction exists). Every `watch` must be paired with one `unwatch`.
   */
  async watch(auctionId: number): Promise<LiveState | null> {
    let entry = this.entries.get(auctionId);
    if (!entry) {
      if (this.missingAuctions.has(auctionId)) return null;
      if (this.entries.size >= this.watchedMax) throw new ApiError('unavailable', 'this gateway watches too many auctions');
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
    if (!(await this.follow(shard))) return null;
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
    const state = await this.engineState(auctionId);
    return state ? fromEngine(state) : this.fromReadModel(shard, auctionId);
  }

  /**
   * The engine's state of an auction, answered by its shard's primary once
   * every event it reflects is durable (null: the engine does not hold it).
   * ApiError `unavailable` when the primary does not answer.
   */
  async engineState(auctionId: number): Promise<AuctionState | null> {
    const shard = shardOfAuction(auctionId);
    let reply: { states?: (AuctionState | null)[]; error?: { code: string; message: string } };
    try {
      reply = await this.o.engines.control(shard, { op: 'states', auctionIds: [auctionId] });
    } catch (error) {
      throw new ApiError('unavailable', `shard ${shard} did not answer`, { cause: error });
    }
    if (reply.error) throw new ApiError('unavailable', reply.error.message);
    return reply.states?.[0] ?? null;
  }

  private async fromReadModel(shard: number, auctionId: number): Promise<LiveState | null | 'unknown'> {
    try {
      const reply = await this.o.nc.request(auditSubject(shard), encode({ op: 'auction', auctionId }), { timeout: this.o.queryTimeoutMs ?? 2_000 });
      const a = (decode(reply.data) as { auction?: Record<string, unknown> | null }).auction;
      if (!a) return null;
      const state: LiveState = {
        auctionId, price: a.price as number, leaderId: (a.leaderId as number | null) ?? 0, bidCount: a.bidCount as number,
        endsAt: a.endsAt as number, status: a.status as Status, version: a.version as number, reserveMet: a.reserveMet as boolean,
      };
      if (a.winnerId) state.winnerId = a.winnerId as number;
      return state;
    } catch {
      // No read model reachable: the engine, which answered, does not know the auction, but an
      // ended one may still exist in the read model.
      return 'unknown';
    }
  }

  // --- following the shards ------------------------------------------------------

  private async discover(): Promise<void> {
    const names = await this.o.jsm.streams.names(subjects.logWildcard).next();
    for (const name of names) {
      const shard = Number(/^AUCTION_LOG_(\d+)$/.exec(name)?.[1] ?? NaN);
      if (!Number.isInteger(shard)) continue;
      this.missingShards.forget(shard);
      this.startFollowing(shard).catch((error: unknown) => this.o.logger.warn({ err: error, shard }, 'cannot follow a discovered shard yet'));
    }
  }

  /**
   * Follows a shard's stream from now on (once); false when the shard has no
   * stream (no such auctions). Whether it exists is asked of the stream names
   * (only that shard's), never of its info: the gateway may read the info of
   * the cluster's shards only.
   */
  private follow(shard: number): Promise<boolean> {
    if (this.shards.has(shard)) return this.startFollowing(shard);
    if (this.missingShards.has(shard)) return Promise.resolve(false);
    let lookup = this.lookups.get(shard);
    if (!lookup) {
      lookup = (async () => {
        let names: string[];
        try {
          names = await this.o.jsm.streams.names(subjects.log(shard)).next();
        } catch (error) {
          throw new ApiError('unavailable', `cannot look shard ${shard} up`, { cause: error });
        }
        if (!names.includes(streamName(shard))) {
          this.missingShards.add(shard);
          return false;
        }
        return this.startFollowing(shard);
      })().finally(() => this.lookups.delete(shard));
      this.lookups.set(shard, lookup);
    }
    return lookup;
  }

  /** Starts following a shard stream known to exist, once; resolves when the follower is live (false: stopped, or gone). */
  private startFollowing(shard: number): Promise<boolean> {
    const known = this.shards.get(shard);
    if (known) return known.ready;
    const entry: { ready: Promise<boolean>; follower: StreamFollower | null } = { ready: Promise.resolve(false), follower: null };
    entry.ready = (async () => {
      const follower = new StreamFollower({
        nc: this.o.nc,
        jsm: this.o.jsm,
        stream: streamName(shard),
        republish: shardFollowSettings(shard).republish,
        logger: this.o.logger,
        onMessage: (message) => this.onBatch(decodeLog(message.data)),
        onReset: () => this.refetchShard(shard),
      });
      try {
        await follower.start();
      } catch (error) {
        this.shards.delete(shard);
        if (isStreamNotFound(error)) {
          this.missingShards.add(shard);
          return false;
        }
        throw new ApiError('unavailable', `cannot follow shard ${shard}`, { cause: error });
      }
      if (this.stopped) {
        await follower.stop();
        return false;
      }
      entry.follower = follower;
      this.followed.add(shard);
      this.o.logger.info({ shard, from: follower.lastSeq }, 'following shard stream');
      return true;
    })();
    this.shards.set(shard, entry);
    return entry.ready;
  }

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
          const reply: { states?: (AuctionState | null)[]; error?: { message: string } } = await this.o.engines.control(shard, { op: 'states', auctionIds: batch });
          if (reply.error) throw new Error(reply.error.message);
          states = reply.states;
        } catch (error) {
          this.o.logger.warn({ err: error, shard, auctions: batch.length }, 'cannot read watched auctions again after a reset; they catch up with their next change');
          continue;
        }
        for (const [k, auctionId] of batch.entries()) {
          const entry = this.entries.get(auctionId);
          if (!entry) continue;
          const engine = states?.[k];
          const modelled = engine ? null : await this.fromReadModel(shard, auctionId).catch(() => null);
          const fresh = engine ? fromEngine(engine) : typeof modelled === 'object' ? modelled : null; // not an 'unknown' answer
          // A first state still on its way may predate the skip: it is read again once it is in.
          if (!entry.state) await entry.ready.catch(() => null);
          if (fresh && this.entries.get(auctionId) === entry && entry.state && fresh.version > entry.state.version) {
            entry.state = fresh;
            this.markDirty(auctionId);
          }
        }
      }
    })().catch((error: unknown) => this.o.logger.error({ err: error, shard }, 'reading watched auctions again after a reset failed'));
  }

  private onBatch(batch: LogBatch): void {
    for (const event of batch.events) {
      const auctionId = event.outcome.auctionId;
      // A new auction may have an id someone asked about before it existed.
      if (event.command.type === 'create') this.missingAuctions.forget(auctionId);
      const entry = this.entries.get(auctionId);
      if (!entry || event.outcome.status !== 'accepted') continue;
      const patch = patchOf(event.command.type, event.outcome as BidOutcome | LifecycleOutcome);
      if (!patch) continue;
      if (!entry.state) {
        entry.early.push(patch);
        continue;
      }
      if (patch.version <= entry.state.version) continue;
      entry.state = { ...entry.state, ...patch };
      this.markDirty(auctionId);
    }
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

export function fromEngine(s: AuctionState): LiveState {
  const state: LiveState = {
    auctionId: s.auctionId, price: s.price, leaderId: s.leaderId, bidCount: s.bidCount, endsAt: s.endsAt,
    status: s.status, version: s.version, reserveMet: s.reserveMet,
  };
  if (s.winnerId) state.winnerId = s.winnerId;
  return state;
}

/** What an accepted event changes in an auction's public state. */
function patchOf(type: string, outcome: BidOutcome | LifecycleOutcome): Patch | null {
  if (type === 'bid') {
    const o = outcome as BidOutcome;
    if (o.duplicate) return null;
    return { price: o.price, leaderId: o.leaderId, bidCount: o.bidCount, endsAt: o.endsAt, version: o.version, reserveMet: o.reserveMet, status: 'open' };
  }
  const o = outcome as LifecycleOutcome;
  if (type === 'open') return { status: 'open', version: o.version };
  if (type === 'close' || type === 'cancel') {
    // endsAt stays as the engine keeps it (a forced close does not rewrite it).
    const patch: Patch = { status: o.auctionStatus ?? (type === 'cancel' ? 'cancelled' : 'closed'), price: o.price, reserveMet: o.reserveMet, version: o.version };
    if (o.winnerId) patch.winnerId = o.winnerId;
    return patch;
  }
  return null;
}

