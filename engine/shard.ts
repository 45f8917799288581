import type { Logger } from 'pino';
import { AuctionCore, InvariantError } from './core/index.js';
import { ShardLease } from '../replica/lease.js';
import { DeposedError, type BusPort, type BusRequest, type Cancel, type Clock, type LeaseStorePort, type LogFollower, type ShardLogPort, type SnapshotPort } from '../shard/ports.js';
import {
  commandError,
  decode,
  encode,
  encodeLog,
  parseCommand,
  subjects,
  WIRE_LIMITS,
  type Command,
  type CommandResult,
  type CommandText,
  type LogBatch,
  type LogEvent,
  type Outcome,
} from '../protocol/index.js';
import { adminSubjects, type ShardCopyStatus } from '../protocol/cluster.js';

export type ShardEngineOptions = {
  shard: number;
  bus: BusPort;
  log: ShardLogPort;
  snapshots: SnapshotPort;
  clock: Clock;
  logger: Logger;
  /** This process's instance id, written into every batch. */
  writer: string;
  /** The engine's stable id (placement); reported in status. */
  engineId?: string;
  /** Used when the stream is created; an existing stream's recorded values win. */
  auctionsMax: number;
  idempotencyEntriesMax: number;
  streamReplicas: number;
  /** Events in one stream message. */
  batchEventsMax?: number;
  /** Appends awaiting their PubAck at once. */
  batchesInFlightMax?: number;
  /** Commands waiting to be decided; beyond it requests are answered `unavailable`. */
  pendingCommandsMax?: number;
  appendTimeoutMs?: number;
  snapshotEveryEvents?: number;
  snapshotEveryMs?: number;
  /**
   * Leadership through a lease in this store: the engine leads when it
   * holds the lease and follows the stream (a hot standby) otherwise. Without
   * it the engine simply serves (single-engine setups and tests).
   */
  lease?: { store: LeaseStorePort; ttlMs: number; renewMs: number };
  /** A broken invariant: the owner stops the process (exit 70); the copy decides nothing more. */
  onFatal: (error: unknown) => void;
  /** Start as a follower even when the lease is free (the `replica` role); it still takes over on expiry. */
  preferFollow?: boolean;
  /** Sweep every invariant of the core after each batch (default: VERIFY=1 in the environment; tests and soak runs). */
  verify?: boolean;
};

type Status = 'starting' | 'serving' | 'following' | 'taking-over' | 'resyncing' | 'deposed' | 'stopped';

type Parsed = ReturnType<typeof parseCommand>;

type Sub = { unsubscribe(): void };

/** A request being decided: answered once every event it depends on is durable. */
type PendingRequest = {
  msg: BusRequest;
  parsed: Parsed[];
  results: CommandResult[];
  /** A read answered with this body instead of `results` (the `states` control op). */
  body?: unknown;
};

type Batch = {
  firstSeq: number;
  lastSeq: number;
  /** The stream sequence this append expects before it. */
  expectStreamSeq: number;
  requests: PendingRequest[];
  settled: boolean;
  failed: boolean;
  append: Promise<void>;
};

/**
 * The primary engine of one shard: the single writer of its log. Commands
 * are drained from a bounded queue, decided by the core in one go, appended
 * as ONE stream message with a chained expected sequence, and answered only
 * when that message is acknowledged. See docs/engine.md.
 */
export class ShardEngine {
  readonly shard: number;
  private readonly log: ShardLogPort;
  private readonly snapshots: SnapshotPort;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly timers: Clock;
  private readonly limits: Required<Pick<ShardEngineOptions, 'batchEventsMax' | 'batchesInFlightMax' | 'pendingCommandsMax' | 'appendTimeoutMs' | 'snapshotEveryEvents' | 'snapshotEveryMs'>>;
  private core!: AuctionCore;
  private coreConfig!: { auctionsMax: number; idempotencyEntriesMax: number };
  private status: Status = 'starting';
  private pending: PendingRequest[] = [];
  private pendingCommands = 0;
  private inflight: Batch[] = [];
  /** Stream sequence the next append expects (the last one appended, acked or not). */
  private expectStreamSeq = 0;
  /** The last stream message and event known durable. */
  private durableStreamSeq = 0;
  private durableSeq = 0;
  private eventsSinceSnapshot = 0;
  /** Counters since start, for status and benchmarks. */
  private appendsAcked = 0;
  private eventsAcked = 0;
  private lastSnapshotAt = 0;
  /** The snapshot file being written, if any. */
  private snapshotWriting: Promise<void> | null = null;
  private snapshotWanted = false;
  private scheduled = false;
  private timer: Cancel | null = null;
  private housekeeping: Cancel | null = null;
  private commandSub: Sub | null = null;
  private controlSub: Sub | null = null;
  private adminSub: Sub | null = null;
  /** Operators waiting for the snapshot they asked for (answered when it is written). */
  private snapshotWaiters: BusRequest[] = [];
  /** The newest snapshot written or loaded by this copy. */
  private snapshot: ShardCopyStatus['snapshot'] = null;
  private steppingDown = false;
  private resyncing: Promise<void> | null = null;
  private readonly lease: ShardLease | null;
  private nodeControlSub: Sub | null = null;
  private follower: { stop: () => Promise<void>; done: Promise<void> } | null = null;
  private leaseWatchdog: Cancel | null = null;
  /**
   * Follower lag: stream messages not applied yet (exact), events in them
   * (estimated from the mean events per message so far) and how old the
   * newest applied batch was when applied (0 when caught up).
   */
  private lag = { messagesBehind: 0, eventsBehindEstimate: 0, msBehind: 0 };
  private followed = { messages: 0, events: 0 };
  private becameLeaderAt = 0;
  private readonly verifyEveryBatch: boolean;

  constructor(private readonly options: ShardEngineOptions) {
    this.shard = options.shard;
    this.log = options.log;
    this.snapshots = options.snapshots;
    this.logger = options.logger.child({ shard: options.shard });
    this.timers = options.clock;
    this.clock = () => options.clock.now();
    this.verifyEveryBatch = options.verify ?? process.env.VERIFY === '1';
    this.lease = options.lease
      ? new ShardLease(options.lease.store, options.clock, options.shard, { engineId: options.engineId ?? options.writer, writer: options.writer }, options.lease.ttlMs, options.lease.renewMs, this.logger)
      : null;
    this.limits = {
      batchEventsMax: options.batchEventsMax ?? 4_096,
      batchesInFlightMax: options.batchesInFlightMax ?? 8,
      pendingCommandsMax: options.pendingCommandsMax ?? 100_000,
      appendTimeoutMs: options.appendTimeoutMs ?? 2_000,
      snapshotEveryEvents: options.snapshotEveryEvents ?? 1_000_000,
      snapshotEveryMs: options.snapshotEveryMs ?? 60_000,
    };
  }

  get state(): Status {
    return this.status;
  }

  /** The state hash of this copy's core (what every copy must share at the same position). */
  stateHash(): string {
    return this.core?.stateHash() ?? '';
  }

  /** Loads the newest snapshot plus the stream tail, then serves the shard. */
  async start(): Promise<void> {
    const { config } = await this.log.ensure(
      { shard: this.shard, auctionsMax: this.options.auctionsMax, idempotencyEntriesMax: this.options.idempotencyEntriesMax },
      this.options.streamReplicas,
    );
    this.coreConfig = { auctionsMax: config.auctionsMax, idempotencyEntriesMax: config.idempotencyEntriesMax };
    await this.rebuild();
    this.nodeControlSub = this.options.bus.serve(subjects.nodeControl(this.shard, this.options.engineId ?? this.options.writer), (msg) => this.onControl(msg));
    if (!this.lease) {
      await this.lead();
      return;
    }
    await this.lease.watch();
    if (!this.options.preferFollow && this.lease.expired() && (await this.lease.acquire())) await this.lead();
    else await this.follow();
  }

  /**
   * Becomes the shard's writer: appends the fence (an empty batch naming the
   * new leader, expecting the stream's current last sequence; if another
   * writer slipped in, catch up and try again while the lease is ours), then
   * takes the command subject.
   */
  private async lead(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const fence: LogBatch = { v: 1, shard: this.shard, writer: this.options.writer, t: Math.max(this.clock(), this.core.lastTimestampMs), events: [], leader: { engineId: this.options.engineId ?? this.options.writer, writer: this.options.writer } };
      try {
        const ack = await this.log.append(encodeLog(fence), this.durableStreamSeq, this.options.writer, this.limits.appendTimeoutMs);
        this.durableStreamSeq = ack.seq;
        this.expectStreamSeq = ack.seq;
        break;
      } catch (error) {
        if (this.lease && !this.lease.held) {
          await this.follow();
          return;
        }
        if (attempt >= 20) throw error;
        this.logger.warn({ err: (error as Error).message, attempt }, 'fence append failed; catching up');
        await this.catchUp();
      }
    }
    this.controlSub = this.options.bus.serve(subjects.control(this.shard), (msg) => this.onControl(msg));
    this.subscribeCommands();
    this.adminSub = this.options.bus.serve(adminSubjects.engine(this.shard), (msg) => this.onAdmin(msg));
    this.housekeeping = this.timers.every(1_000, () => this.checkSnapshotDue());
    this.lease?.keepRenewing((why) => this.depose(new DeposedError(`shard ${this.shard}: ${why}`)));
    this.status = 'serving';
    this.becameLeaderAt = this.clock();
    this.logger.info({ lastSeq: this.core.lastSeq, streamSeq: this.durableStreamSeq, auctionsLive: this.core.auctionsLive }, 'serving shard');
    this.armTimer();
    this.schedule();
  }

  /** Hot standby: applies every batch of the stream as it lands; takes over when the lease expires. */
  private async follow(): Promise<void> {
    this.status = 'following';
    this.logger.info({ streamSeq: this.durableStreamSeq, holder: this.lease?.holder?.engineId }, 'following shard');
    // The watchdog first: while the stream cannot be read (no stream leader yet), the lease may still lapse.
    this.leaseWatchdog ??= this.timers.every(Math.max(10, Math.floor((this.options.lease?.renewMs ?? 100) / 2)), () => {
      if (this.status === 'following' && this.lease?.expired()) void this.takeOver();
    });
    // Opening the consumer fails while JetStream elects a new stream leader: retry until it opens
    // (a shard left "following" with no follower would never serve again).
    let opened: LogFollower | null = null;
    for (let attempt = 1; opened === null; attempt++) {
      try {
        opened = await this.log.follow(this.durableStreamSeq);
      } catch (error) {
        if (this.status !== 'following') return;
        this.logger.warn({ err: error, attempt }, 'cannot read the shard stream yet; retrying');
        await this.timers.sleep(Math.min(1_000, 50 * attempt));
      }
      if (this.status !== 'following') {
        await opened?.stop();
        return;
      }
    }
    const { messages, stop } = opened;
    const done = (async () => {
      for await (const { streamSeq, batch, pending } of messages) {
        if (streamSeq <= this.durableStreamSeq) continue;
        replayBatch(this.core, batch);
        if (this.verifyEveryBatch) this.core.verify();
        this.durableStreamSeq = streamSeq;
        this.expectStreamSeq = streamSeq;
        this.durableSeq = this.core.lastSeq;
        this.eventsSinceSnapshot += batch.events.length;
        this.followed.messages += 1;
        this.followed.events += batch.events.length;
        this.lag = {
          messagesBehind: pending,
          eventsBehindEstimate: Math.round((pending * this.followed.events) / this.followed.messages),
          msBehind: pending === 0 ? 0 : Math.max(0, this.clock() - batch.t),
        };
        if (this.eventsSinceSnapshot >= this.limits.snapshotEveryEvents && !this.snapshotWriting) this.takeSnapshot();
      }
    })().catch((error: unknown) => {
      if (error instanceof InvariantError) this.crash(error);
      else if (this.status === 'following') {
        // Read again from where we are, unless this follower was stopped or replaced meanwhile.
        this.logger.warn({ err: error }, 'follower stopped reading; reopening');
        this.timers.after(200, () => {
          if (this.status !== 'following' || this.follower?.done !== done) return;
          this.follower = null;
          void this.follow();
        });
      }
    });
    this.follower = { stop, done };
  }

  private async stopFollowing(): Promise<void> {
    this.leaseWatchdog?.();
    this.leaseWatchdog = null;
    const follower = this.follower;
    this.follower = null;
    if (follower) {
      await follower.stop();
      await follower.done;
    }
  }

  /** The primary's lease expired: catch up to the tail, take the lease, fence, serve. */
  private async takeOver(): Promise<void> {
    if (this.status !== 'following' || !this.lease) return;
    this.status = 'taking-over';
    const started = this.clock();
    try {
      await this.stopFollowing();
      await this.catchUp();
      if (!(await this.lease.acquire())) {
        await this.follow();
        return;
      }
      await this.lead();
      this.logger.warn({ ms: this.clock() - started, previous: this.lease.holder?.engineId }, 'took over the shard');
    } catch (error) {
      if (error instanceof InvariantError) this.crash(error);
      this.logger.error({ err: error }, 'takeover failed; following again');
      this.lease.drop();
      await this.follow();
    }
  }

  /** Applies whatever the stream holds beyond our position. */
  private async catchUp(): Promise<void> {
    const last = await this.log.lastStreamSeq();
    for await (const { streamSeq, batch } of this.log.read(this.durableStreamSeq, last)) {
      replayBatch(this.core, batch);
      this.durableStreamSeq = streamSeq;
    }
    this.expectStreamSeq = this.durableStreamSeq;
    this.durableSeq = this.core.lastSeq;
  }

  /** Stops taking commands, waits for appends in flight, writes a snapshot. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return;
    const wasServing = this.status === 'serving';
    const wasFollowing = this.status === 'following';
    this.status = 'stopped';
    this.unsubscribeLeader();
    this.nodeControlSub?.unsubscribe();
    this.clearTimers();
    this.failPending('engine stopping');
    await this.stopFollowing();
    await Promise.allSettled(this.inflight.map((b) => b.append));
    const clean = this.inflight.every((b) => !b.failed) && this.durableSeq === this.core.lastSeq;
    await this.snapshotWriting;
    if ((wasServing || wasFollowing) && clean && this.eventsSinceSnapshot > 0) {
      this.takeSnapshot();
      await this.snapshotWriting;
    }
    // A clean hand-over: the next primary need not wait out the lease.
    if (wasServing) await this.lease?.release();
    this.lease?.close();
    this.logger.info({ lastSeq: this.durableSeq }, 'stopped');
  }

  // --- intake ---------------------------------------------------------------

  /**
   * Commands from the command subject (gateways) or, with `admin`, from the
   * operators' subject: only operators may close or cancel an auction (NATS
   * permissions keep everyone else off `auction.admin.>`).
   */
  private onRequest(msg: BusRequest, admin: boolean): void {
    let commands: unknown[];
    try {
      const body = decode(msg.data) as { commands?: unknown };
      if (!Array.isArray(body?.commands)) throw new Error('expected {commands: [...]}');
      commands = body.commands;
    } catch (error) {
      this.reply(msg, { results: [], error: commandError('invalid_request', `malformed request: ${(error as Error).message}`) });
      return;
    }
    if (commands.length === 0 || commands.length > WIRE_LIMITS.requestCommandsMax) {
      this.reply(msg, { results: [], error: commandError('invalid_request', `a request carries 1..${WIRE_LIMITS.requestCommandsMax} commands`) });
      return;
    }
    if (this.status !== 'serving' || this.pendingCommands + commands.length > this.limits.pendingCommandsMax) {
      const why = this.status === 'serving' ? 'engine overloaded' : `shard ${this.status}`;
      this.reply(msg, { results: commands.map(() => commandError('unavailable', why)) });
      return;
    }
    const parsed = commands.map((raw): Parsed => {
      const p = parseCommand(raw);
      if (admin || 'status' in p || (p.command.type !== 'close' && p.command.type !== 'cancel')) return p;
      return commandError('forbidden', `${p.command.type} is an operator action: use auctionctl (subject auction.admin.engine.<shard>)`);
    });
    this.pending.push({ msg, parsed, results: new Array(commands.length) });
    this.pendingCommands += commands.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.timers.soon(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  // --- the pipeline ----------------------------------------------------------

  /** Drains what has arrived, decides it, appends one batch. */
  private pump(): void {
    if (this.status !== 'serving') return;
    if (this.snapshotWanted && !this.snapshotWriting) {
      if (this.inflight.length > 0) return; // an ack will pump again
      this.takeSnapshot();
    }
    if (this.inflight.length >= this.limits.batchesInFlightMax) return;
    const t = Math.max(this.clock(), this.core.lastTimestampMs);
    const events: LogEvent[] = [];
    const requests: PendingRequest[] = [];
    const firstSeq = this.core.lastSeq + 1;
    try {
      for (let due = this.core.takeDue(t); due && events.length < this.limits.batchEventsMax; due = this.core.takeDue(t)) {
        events.push(this.decide(due, t));
      }
      while (this.pending.length > 0) {
        const request = this.pending[0];
        if (events.length > 0 && events.length + request.parsed.length > this.limits.batchEventsMax) break;
        this.pending.shift();
        this.pendingCommands -= request.parsed.length;
        this.decideRequest(request, t, events);
        requests.push(request);
      }
    } catch (error) {
      this.crash(error);
      return;
    }
    if (this.verifyEveryBatch) {
      try {
        this.core.verify();
      } catch (error) {
        this.crash(error);
        return;
      }
    }
    if (events.length === 0) {
      // Only duplicates and malformed commands: answer once what they point at is durable.
      this.releaseAfterInflight(requests);
    } else {
      this.appendBatch(firstSeq, t, events, requests);
    }
    if (this.pending.length > 0 || this.core.nextDueAt() <= t) this.schedule();
    this.armTimer();
  }

  private decideRequest(request: PendingRequest, t: number, events: LogEvent[]): void {
    request.parsed.forEach((parsed, i) => {
      if ('status' in parsed) {
        request.results[i] = parsed;
        return;
      }
      const { command, text } = parsed;
      if (command.type === 'bid') {
        // A retry of a remembered bid: the original answer, nothing logged.
        const original = this.core.lookupBid(command.bidderId, command.bidId, command.auctionId);
        if (original) {
          request.results[i] = original;
          return;
        }
      }
      const event = this.decide(command, t, text);
      // Bid outcomes carry their seq already (the hot path: no second copy); others get it added.
      request.results[i] = (event.outcome.type === 'bid' ? event.outcome : { ...event.outcome, seq: event.seq }) as CommandResult;
      events.push(event);
    });
  }

  private decide(command: Command, t: number, text?: CommandText): LogEvent {
    const seq = this.core.lastSeq + 1;
    const outcome = this.core.apply(command, seq, t);
    const event: LogEvent = { seq, command, outcome };
    if (text && Object.keys(text).length > 0) event.text = text;
    return event;
  }

  private appendBatch(firstSeq: number, t: number, events: LogEvent[], requests: PendingRequest[]): void {
    const batchMessage: LogBatch = { v: 1, shard: this.shard, writer: this.options.writer, t, events };
    const expectStreamSeq = this.expectStreamSeq++;
    const batch: Batch = {
      firstSeq,
      lastSeq: events[events.length - 1].seq,
      expectStreamSeq,
      requests,
      settled: false,
      failed: false,
      append: Promise.resolve(),
    };
    batch.append = this.log
      .append(encodeLog(batchMessage), expectStreamSeq, this.options.writer, this.limits.appendTimeoutMs)
      .then(
        (ack) => this.onAppended(batch, ack.seq),
        (error: unknown) => this.onAppendFailed(batch, error),
      );
    this.inflight.push(batch);
  }

  private onAppended(batch: Batch, streamSeq: number): void {
    batch.settled = true;
    if (batch.failed) return; // answered `unavailable` already (an earlier batch failed)
    if (streamSeq !== batch.expectStreamSeq + 1) {
      this.crash(new InvariantError(`append landed at ${streamSeq}, expected ${batch.expectStreamSeq + 1}`));
      return;
    }
    // Acks arrive in order on one connection; release from the front.
    while (this.inflight.length > 0 && this.inflight[0].settled && !this.inflight[0].failed) {
      const done = this.inflight.shift()!;
      this.durableStreamSeq = done.expectStreamSeq + 1;
      this.durableSeq = done.lastSeq;
      this.eventsSinceSnapshot += done.lastSeq - done.firstSeq + 1;
      this.appendsAcked += 1;
      this.eventsAcked += done.lastSeq - done.firstSeq + 1;
      for (const request of done.requests) this.answer(request);
    }
    this.checkSnapshotDue();
    this.schedule();
  }

  private onAppendFailed(batch: Batch, error: unknown): void {
    batch.settled = true;
    if (this.status !== 'serving') {
      batch.failed = true;
      return;
    }
    const firstUnacked = this.inflight[0] === batch;
    if (error instanceof DeposedError && firstUnacked) {
      this.depose(error);
      return;
    }
    this.abandonInflight('append failed: outcome unknown, retry with the same bidId', 'engine resyncing');
    this.clearTimers();
    this.logger.warn({ err: error, expectStreamSeq: batch.expectStreamSeq }, 'append failed; resyncing from the stream');
    this.status = 'resyncing';
    this.resyncing = this.resync();
  }

  /** After an unknown outcome: wait for every append to settle, rebuild from the log, serve again. */
  private async resync(): Promise<void> {
    await this.rebuildWhile('resyncing', async () => {
      this.status = 'serving';
      this.subscribeCommands(); // a step-down interrupted by the failure had stopped intake
      this.logger.info({ lastSeq: this.core.lastSeq, streamSeq: this.durableStreamSeq }, 'resynced; serving again');
      this.armTimer();
      this.schedule();
    });
  }

  /**
   * Waits for every append in flight to settle, then rebuilds from snapshot
   * and stream (retrying transient failures) as long as the status stays
   * `status`, and runs `then`. Being deposed meanwhile, or a broken
   * invariant, ends it.
   */
  private async rebuildWhile(status: Status, then: () => Promise<void>): Promise<void> {
    await Promise.allSettled(this.inflight.map((b) => b.append));
    this.inflight = [];
    for (let attempt = 1; this.status === status; attempt++) {
      try {
        await this.rebuild();
        if (this.status !== status) return;
        await then();
        return;
      } catch (error) {
        if (error instanceof DeposedError && this.status !== 'deposed') {
          this.depose(error);
          return;
        }
        if (error instanceof InvariantError) {
          this.crash(error);
          return;
        }
        this.logger.warn({ err: error, attempt, status }, 'rebuild failed; retrying');
        await this.timers.sleep(Math.min(1_000, 50 * attempt));
      }
    }
  }

  /**
   * Rebuilds the core from the newest snapshot plus the stream tail. Every
   * logged command is decided again and must give the logged outcome. A batch
   * written by another engine after our last durable one means we were
   * deposed while our append's outcome was unknown.
   */
  private async rebuild(): Promise<void> {
    const loaded = this.snapshots.loadNewest(this.coreConfig, (file, error) => this.logger.warn({ file, err: error }, 'skipping unreadable snapshot'));
    let core = loaded?.core ?? new AuctionCore({ shard: this.shard, ...this.coreConfig });
    let streamSeq = loaded?.meta.streamSeq ?? 0;
    if (loaded) {
      this.logger.info(loaded.meta, 'loaded snapshot');
      this.snapshot = { at: loaded.writtenAt, ...loaded.meta };
    }
    const last = await this.log.lastStreamSeq();
    if (last < streamSeq) {
      this.logger.warn({ snapshotStreamSeq: streamSeq, streamLast: last }, 'snapshot is ahead of the stream; replaying from the start');
      core = new AuctionCore({ shard: this.shard, ...this.coreConfig });
      streamSeq = 0;
    }
    const ourLastDurable = this.durableStreamSeq;
    for await (const { streamSeq: at, batch } of this.log.read(streamSeq, last)) {
      if (this.status === 'resyncing' && at > ourLastDurable && batch.writer !== this.options.writer) {
        throw new DeposedError(`shard ${this.shard}: stream message ${at} was written by ${batch.writer}`);
      }
      replayBatch(core, batch);
      streamSeq = at;
    }
    this.core = core;
    this.expectStreamSeq = last;
    this.durableStreamSeq = last;
    this.durableSeq = core.lastSeq;
    // A replayed tail is worth a snapshot at the next periodic check.
    this.eventsSinceSnapshot = last > (loaded?.meta.streamSeq ?? 0) ? 1 : 0;
    this.lastSnapshotAt = this.clock();
  }

  private depose(error: Error): void {
    if (this.status === 'deposed' || this.status === 'stopped') return;
    this.status = 'deposed';
    this.unsubscribeLeader();
    this.clearTimers();
    this.lease?.drop();
    this.abandonInflight('shard changed primary: outcome unknown, retry with the same bidId', 'shard deposed');
    this.logger.error({ err: error }, 'deposed: another writer appended to the shard log; stopped serving it');
    if (this.lease) void this.rejoinAsFollower();
  }

  /**
   * Every decision not known durable is now of unknown outcome: each waiting
   * request is answered `unavailable` once (a batch already given up is skipped).
   */
  private abandonInflight(inflightMessage: string, pendingMessage: string): void {
    for (const b of this.inflight) {
      if (b.failed) continue;
      b.failed = true;
      for (const request of b.requests) this.answerUnavailable(request, inflightMessage);
    }
    this.failPending(pendingMessage);
  }

  /** After losing the shard: forget undecided state, rebuild from the log, follow as a replica. */
  private async rejoinAsFollower(): Promise<void> {
    await this.rebuildWhile('deposed', () => this.follow());
  }

  /** A broken invariant: stop deciding at once, loudly. */
  private crash(error: unknown): void {
    this.logger.fatal({ err: error }, 'invariant broken; exiting');
    this.options.onFatal(error);
  }

  // --- answers ---------------------------------------------------------------

  private answer(request: PendingRequest): void {
    this.reply(request.msg, request.body ?? { results: request.results });
  }

  private answerUnavailable(request: PendingRequest, message: string): void {
    if (request.body) {
      this.reply(request.msg, { error: commandError('unavailable', message) });
      return;
    }
    this.reply(request.msg, {
      results: request.results.map((r, i) =>
        // Malformed commands stay errors; every decided one is of unknown outcome.
        'status' in request.parsed[i] ? r : commandError('unavailable', message)),
    });
  }

  private releaseAfterInflight(requests: PendingRequest[]): void {
    if (requests.length === 0) return;
    const last = this.inflight[this.inflight.length - 1];
    if (last) last.requests.push(...requests);
    else for (const request of requests) this.answer(request);
  }

  private failPending(message: string): void {
    for (const request of this.pending) this.reply(request.msg, { results: request.parsed.map(() => commandError('unavailable', message)) });
    this.pending = [];
    this.pendingCommands = 0;
    for (const msg of this.snapshotWaiters) this.reply(msg, { error: commandError('unavailable', message) });
    this.snapshotWaiters = [];
    this.snapshotWanted = false;
  }

  private subscribeCommands(): void {
    this.commandSub ??= this.options.bus.serve(subjects.commands(this.shard), (msg) => this.onRequest(msg, false));
  }

  /** Stops taking commands, queries and operator actions as the shard's primary. */
  private unsubscribeLeader(): void {
    for (const sub of [this.commandSub, this.controlSub, this.adminSub]) sub?.unsubscribe();
    this.commandSub = null;
    this.controlSub = null;
    this.adminSub = null;
  }

  private reply(msg: BusRequest, body: unknown): void {
    if (msg.reply) msg.respond(encode(body));
  }

  // --- timers and snapshots --------------------------------------------------

  private armTimer(): void {
    this.timer?.();
    this.timer = null;
    if (this.status !== 'serving') return;
    const due = this.core.nextDueAt();
    if (!Number.isFinite(due)) return;
    this.timer = this.timers.after(due - this.clock(), () => this.schedule());
  }

  private clearTimers(): void {
    this.timer?.();
    this.timer = null;
    this.housekeeping?.();
    this.housekeeping = null;
  }

  private checkSnapshotDue(): void {
    if (this.status !== 'serving' || this.eventsSinceSnapshot === 0) return;
    const due = this.eventsSinceSnapshot >= this.limits.snapshotEveryEvents || this.clock() - this.lastSnapshotAt >= this.limits.snapshotEveryMs;
    if (due && !this.snapshotWanted) {
      this.snapshotWanted = true;
      this.schedule();
    }
  }

  /**
   * Only with nothing in flight: a snapshot must never hold an event the log
   * might lack. The image is taken now; the file is written off the event
   * loop (`snapshotWriting`), one at a time, and waiters are answered when it
   * is durable.
   */
  private takeSnapshot(): void {
    this.snapshotWanted = false;
    const started = this.clock();
    const waiters = this.snapshotWaiters;
    this.snapshotWaiters = [];
    const events = this.eventsSinceSnapshot;
    this.eventsSinceSnapshot = 0;
    this.lastSnapshotAt = started;
    const engineId = this.options.engineId ?? this.options.writer;
    this.snapshotWriting = this.snapshots.save(this.core, this.durableStreamSeq).then(
      (meta) => {
        const ms = this.clock() - started;
        this.snapshot = { at: started, ...meta };
        this.logger.info({ ...meta, ms }, 'snapshot written');
        for (const msg of waiters) this.reply(msg, { snapshot: this.snapshot, engineId, ms });
      },
      (error: unknown) => {
        this.eventsSinceSnapshot += events; // due again
        this.logger.error({ err: error }, 'snapshot failed');
        for (const msg of waiters) this.reply(msg, { error: commandError('unavailable', `snapshot failed: ${(error as Error).message}`) });
      },
    ).finally(() => {
      this.snapshotWriting = null;
      if (this.snapshotWanted) this.schedule();
    });
  }

  // --- control ---------------------------------------------------------------

  private onControl(msg: BusRequest): void {
    let request: { op?: unknown; auctionId?: unknown; auctionIds?: unknown };
    try {
      request = decode(msg.data) as typeof request;
    } catch {
      this.reply(msg, { error: commandError('invalid_request', 'malformed control request') });
      return;
    }
    switch (request?.op) {
      case 'status':
        this.reply(msg, this.statusReport());
        return;
      case 'state':
        this.reply(msg, { auction: typeof request.auctionId === 'number' ? this.core.auctionState(request.auctionId) : null });
        return;
      case 'states':
        this.answerStates(msg, request.auctionIds);
        return;
      case 'hash':
        this.reply(msg, { lastSeq: this.core.lastSeq, durableSeq: this.durableSeq, stateHash: this.core.stateHash() });
        return;
      default:
        this.reply(msg, { error: commandError('invalid_request', 'unknown control op') });
    }
  }

  /**
   * Public states of some auctions, answered like a command: only once every
   * event they reflect is durable, so a gateway never shows a version the log
   * might lose (an append in flight could still fail).
   */
  private answerStates(msg: BusRequest, auctionIds: unknown): void {
    if (!Array.isArray(auctionIds) || auctionIds.length > WIRE_LIMITS.requestCommandsMax) {
      this.reply(msg, { error: commandError('invalid_request', `auctionIds: an array of at most ${WIRE_LIMITS.requestCommandsMax} ids`) });
      return;
    }
    if (this.status !== 'serving') {
      this.reply(msg, { error: commandError('unavailable', `shard ${this.status}`) });
      return;
    }
    const states = auctionIds.map((id) => (typeof id === 'number' ? this.core.auctionState(id) : null));
    this.releaseAfterInflight([{ msg, parsed: [], results: [], body: { states, seq: this.core.lastSeq } }]);
  }

  /** What this copy of the shard knows about itself (control op `status`, process status). */
  statusReport(): ShardCopyStatus & Record<string, unknown> {
    return {
      shard: this.shard,
      status: this.steppingDown ? 'stepping-down' : this.status,
      writer: this.options.writer,
      engineId: this.options.engineId ?? this.options.writer,
      lastSeq: this.core?.lastSeq ?? 0,
      durableSeq: this.durableSeq,
      streamSeq: this.durableStreamSeq,
      auctionsLive: this.core?.auctionsLive ?? 0,
      auctionsCreated: this.core?.auctionsCreated ?? 0,
      pendingCommands: this.pendingCommands,
      inflightBatches: this.inflight.length,
      appendsAcked: this.appendsAcked,
      eventsAcked: this.eventsAcked,
      lag: this.lag,
      leaseHolder: this.lease?.holder?.engineId ?? null,
      leaderSince: this.becameLeaderAt,
      snapshot: this.snapshot,
      config: this.coreConfig,
    };
  }

  // --- operator actions (auction.admin.engine.<shard>) --------------------------

  private onAdmin(msg: BusRequest): void {
    let request: { op?: unknown; commands?: unknown; to?: unknown };
    try {
      request = decode(msg.data) as typeof request;
    } catch {
      this.reply(msg, { error: commandError('invalid_request', 'malformed admin request') });
      return;
    }
    if (Array.isArray(request?.commands)) {
      this.onRequest(msg, true);
      return;
    }
    switch (request?.op) {
      case 'snapshot':
        if (this.status !== 'serving' || this.steppingDown) {
          this.reply(msg, { error: commandError('unavailable', `shard ${this.status}`) });
          return;
        }
        if (this.snapshotWaiters.length >= 64) {
          this.reply(msg, { error: commandError('rate_limited', 'snapshots already requested') });
          return;
        }
        this.snapshotWaiters.push(msg);
        this.snapshotWanted = true;
        this.schedule();
        return;
      case 'step-down':
        void this.stepDown(msg, request.to);
        return;
      default:
        this.reply(msg, { error: commandError('invalid_request', 'unknown admin op') });
    }
  }

  /**
   * A clean hand-over to the replica `to`: stop taking commands, decide what
   * is queued, wait until every append is acknowledged, then write the lease
   * naming `to` (which takes it at once, after catching up to the tail) and
   * follow the stream. Nothing acknowledged is lost (all of it is in the
   * stream the successor replays) and nothing is decided twice (this engine
   * decides nothing more). Commands sent meanwhile find no responder and are
   * retried by their senders with the same bidId.
   */
  private async stepDown(msg: BusRequest, to: unknown): Promise<void> {
    const me = this.options.engineId ?? this.options.writer;
    const refuse = (code: 'invalid_request' | 'unavailable', message: string) => this.reply(msg, { error: commandError(code, message) });
    if (typeof to !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(to) || to === me) return refuse('invalid_request', 'to: the engine id of a replica of this shard');
    if (!this.lease) return refuse('invalid_request', 'this engine runs without leases: there is no replica to hand over to');
    if (this.status !== 'serving' || this.steppingDown) return refuse('unavailable', `shard ${this.steppingDown ? 'stepping down' : this.status}`);
    this.steppingDown = true;
    const started = this.clock();
    try {
      this.commandSub?.unsubscribe();
      this.commandSub = null;
      while ((this.pending.length > 0 || this.inflight.length > 0) && this.status === 'serving') {
        this.schedule();
        await Promise.allSettled(this.inflight.map((b) => b.append));
        await new Promise<void>((resolve) => this.timers.soon(resolve));
      }
      if (this.status !== 'serving') return refuse('unavailable', `step-down interrupted: shard ${this.status}`);
      this.unsubscribeLeader();
      this.clearTimers();
      await this.lease.handOver(to);
      this.status = 'following';
      const report = { from: me, to, streamSeq: this.durableStreamSeq, lastSeq: this.durableSeq, ms: this.clock() - started };
      this.logger.warn(report, 'stepped down');
      await this.follow();
      this.reply(msg, report);
    } catch (error) {
      this.logger.error({ err: error }, 'step-down failed');
      refuse('unavailable', `step-down failed: ${(error as Error).message}`);
      // The lease is in an unknown state: stop leading and follow; whoever holds it leads.
      if (this.status === 'serving') this.depose(error as Error);
    } finally {
      this.steppingDown = false;
    }
  }

  /** For orderly shutdown paths and tests: resolves when a running resync ends. */
  async settled(): Promise<void> {
    await this.resyncing;
  }
}

/** Decides a logged batch again; any difference from the logged outcome is divergence. */
export function replayBatch(core: AuctionCore, batch: LogBatch): void {
  for (const event of batch.events) {
    if (event.seq <= core.lastSeq) continue; // covered by the snapshot
    const outcome = core.apply(event.command, event.seq, batch.t);
    if (!sameOutcome(outcome, event.outcome)) {
      throw new InvariantError(`replay diverged at seq ${event.seq}: logged ${JSON.stringify(event.outcome)}, decided ${JSON.stringify(outcome)}`);
    }
  }
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  for (const key of ['status', 'reason', 'auctionId', 'price', 'leaderId', 'endsAt', 'winnerId']) {
    if ((x[key] ?? null) !== (y[key] ?? null)) return false;
  }
  return true;
}
