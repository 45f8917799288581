import type { Logger } from 'pino';
import { InvariantError } from './core/index.js';
import { answer, answerUnavailable, answerUndecided, reply, type PendingRequest } from './answers.js';
import { parseCommands, readAdminRequest, readCommands } from './intake.js';
import {
  commandError,
  encodeLog,
  subjects,
  type Command,
  type CommandResult,
  type CommandText,
  type LogBatch,
  type LogEvent,
} from '../protocol/index.js';
import { adminSubjects } from '../protocol/names.js';
import type { EngineConfig } from './config.js';
import type { CopyState } from '../shard/copy-state.js';
import type { SnapshotTurns } from '../shard/snapshot-turns.js';
import {
  DeposedError,
  logMsgId,
  type BusPort,
  type BusRequest,
  type Cancel,
  type Clock,
  type LoadObserver,
  type ShardLogPort,
} from '../shard/ports.js';

/** What the pipeline reports to its copy's queue; it never changes the copy's role itself. */
export type PrimaryEvent =
  | { kind: 'append-failed'; error: unknown; deposed: boolean }
  | { kind: 'step-down'; msg: BusRequest; to: string }
  | { kind: 'fatal'; error: unknown };

/** The pipeline's bounds are the engine's flags (engine/config.ts). */
export type PrimaryOptions = Pick<
  EngineConfig,
  | 'engineId'
  | 'batchEventsMax'
  | 'batchesInFlightMax'
  | 'pendingCommandsMax'
  | 'queueMsMax'
  | 'appendTimeoutMs'
  | 'snapshotEveryEvents'
  | 'snapshotEveryMs'
> & {
  shard: number;
  writer: string;
  verify: boolean;
  load?: LoadObserver;
  /** Periodic snapshots begin one shard of the process at a time (shard/snapshot-turns.ts). */
  snapshotTurns: SnapshotTurns;
};

type Batch = {
  firstSeq: number;
  lastSeq: number;
  /** The stream sequence this append expects before it. */
  expectStreamSeq: number;
  /** When it was sent (clock of this process): an acknowledgement proves the log was ours then (replica/lease.ts). */
  sentAt: number;
  requests: PendingRequest[];
  settled: boolean;
  failed: boolean;
  append: Promise<void>;
};

/** Operators waiting for a snapshot at once; more are refused (rate_limited). */
const SNAPSHOT_WAITERS_MAX = 64;

/**
 * The resources of a copy that serves its shard: the single writer of its
 * log. Commands are drained from a bounded queue, decided by the core in one
 * go, appended as ONE log message with a chained expected sequence, and
 * answered only when that message is acknowledged. A failed append ends the
 * pipeline at once (everything undecided is answered `unavailable`) and is
 * reported; the copy decides what comes next. See docs/engine.md.
 */
export class Primary {
  private pending: PendingRequest[] = [];
  private pendingCommands = 0;
  private inflight: Batch[] = [];
  private scheduled = false;
  /** The pipeline stopped deciding (failed append, or disposed); nothing is pumped again. */
  private ended = false;
  private timer: Cancel | null = null;
  private housekeeping: Cancel | null = null;
  private subscriptions: { commands: Sub | null; control: Sub | null; admin: Sub | null } = {
    commands: null,
    control: null,
    admin: null,
  };
  private snapshotWanted = false;
  private snapshotWaiters: BusRequest[] = [];
  constructor(
    private readonly state: CopyState,
    private readonly log: ShardLogPort,
    private readonly bus: BusPort,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly options: PrimaryOptions,
    private readonly report: (event: PrimaryEvent) => void,
    private readonly onControl: (msg: BusRequest) => void,
  ) {}

  get pendingCommandCount(): number {
    return this.pendingCommands;
  }

  get inflightBatches(): number {
    return this.inflight.length;
  }

  /**
   * Takes the command, query and operator subjects and starts deciding;
   * resolves once the bus routes them here (a client told "serving" must
   * not find nobody).
   */
  async start(): Promise<void> {
    const { shard } = this.options;
    this.subscriptions.control = this.bus.serve(subjects.control(shard), (msg) => this.onControl(msg));
    this.subscriptions.commands = this.bus.serve(subjects.commands(shard), (msg) => this.onRequest(msg, false));
    this.subscriptions.admin = this.bus.serve(adminSubjects.engine(shard), (msg) => this.onAdmin(msg));
    await this.bus.flush().catch(() => {}); // a connection in trouble: the subscriptions are made, routes come with it
    if (this.ended) return;
    this.housekeeping = this.clock.every(1_000, () => this.checkSnapshotDue());
    this.armTimer();
    this.schedule();
  }

  /** Step-down: no new commands; what is queued is still decided. */
  closeIntake(): void {
    this.subscriptions.commands?.unsubscribe();
    this.subscriptions.commands = null;
  }

  /** Resolves once nothing is queued or in flight (or the pipeline ended). */
  async drain(): Promise<void> {
    while (!this.ended && (this.pending.length > 0 || this.inflight.length > 0)) {
      this.schedule();
      await Promise.allSettled(this.inflight.map((b) => b.append));
      await new Promise<void>((resolve) => this.clock.soon(resolve));
    }
  }

  get stillDeciding(): boolean {
    return !this.ended;
  }

  /**
   * Ends the pipeline. `finish` (a stop): queued requests are refused, appends
   * in flight still answer as they are acknowledged. `abandon` (the shard was
   * lost): every decision not known durable is answered `unavailable`.
   * Resolves when every append has settled.
   */
  async dispose(how: 'finish' | 'abandon', message: { inflight: string; pending: string }): Promise<void> {
    this.end();
    if (how === 'abandon') this.abandon(message);
    else this.failPending(message.pending);
    await Promise.allSettled(this.inflight.map((b) => b.append));
    if (how === 'finish') this.abandon(message); // appends that failed meanwhile
  }

  /** Stops deciding: every subscription and timer ends now (a hand-over writes the lease only after this). */
  stopDeciding(): void {
    this.end();
  }

  private end(): void {
    this.ended = true;
    // Appends in flight may never land now: a snapshot holding their events must not be written.
    this.state.abandonUndurableSnapshot('the primary stopped serving with appends in flight');
    for (const sub of Object.values(this.subscriptions)) sub?.unsubscribe();
    this.subscriptions = { commands: null, control: null, admin: null };
    this.timer?.();
    this.timer = null;
    this.housekeeping?.();
    this.housekeeping = null;
  }

  /** Every decision not known durable is now of unknown outcome: each waiting request is answered once. */
  private abandon(message: { inflight: string; pending: string }): void {
    // A batch acknowledged behind one that failed is abandoned too: `unavailable` is always a safe retry.
    for (const b of this.inflight) {
      if (b.failed) continue;
      b.failed = true;
      for (const request of b.requests) answerUnavailable(request, message.inflight);
    }
    this.failPending(message.pending);
  }

  private failPending(message: string): void {
    for (const request of this.pending) answerUndecided(request, message);
    this.pending = [];
    this.pendingCommands = 0;
    for (const msg of this.snapshotWaiters) reply(msg, { error: commandError('unavailable', message) });
    this.snapshotWaiters = [];
    this.snapshotWanted = false;
  }

  // --- intake ---------------------------------------------------------------

  private onRequest(msg: BusRequest, admin: boolean): void {
    const commands = readCommands(msg);
    if (!commands) return;
    if (this.ended) {
      reply(msg, { results: commands.map(() => commandError('unavailable', 'shard changing primary')) });
      return;
    }
    const now = this.clock.now();
    const retryAfterMs = this.overloaded(commands.length, now, admin);
    if (retryAfterMs > 0) {
      // Shed before anything is decided: nothing recorded, the same bidIds may come again.
      const shed = { ...commandError('overloaded', 'engine overloaded: nothing recorded'), retryAfterMs };
      reply(msg, { results: commands.map(() => shed) });
      this.options.load?.shed(commands.length);
      return;
    }
    this.pending.push({
      msg,
      parsed: parseCommands(commands, admin),
      results: new Array<CommandResult>(commands.length),
      arrivedAt: now,
    });
    this.pendingCommands += commands.length;
    this.schedule();
  }

  /**
   * 0 when a request of `count` commands may wait for the pipeline; otherwise
   * the retry delay to tell its sender. It is shed when the queue would pass
   * its bound, or (operators' requests excepted) when the oldest request
   * queued has waited `queueMsMax` already: a request let in then would wait
   * longer still, past the point where its gateway stops waiting for the
   * answer. The delay is about the time the queue needs to drain.
   */
  private overloaded(count: number, now: number, admin: boolean): number {
    const oldest = this.pending.length > 0 ? now - this.pending[0].arrivedAt : 0;
    const full = this.pendingCommands + count > this.options.pendingCommandsMax;
    if (!full && (admin || oldest < this.options.queueMsMax)) return 0;
    return Math.min(5_000, Math.max(50, oldest));
  }

  private onAdmin(msg: BusRequest): void {
    const request = readAdminRequest(msg);
    if (request === 'commands') this.onRequest(msg, true);
    else if (request?.op === 'snapshot') this.requestSnapshot(msg);
    else if (request?.op === 'step-down') this.report({ kind: 'step-down', msg, to: request.to });
  }

  private requestSnapshot(msg: BusRequest): void {
    if (this.ended || !this.subscriptions.commands) {
      reply(msg, { error: commandError('unavailable', 'shard changing primary') });
      return;
    }
    if (this.snapshotWaiters.length >= SNAPSHOT_WAITERS_MAX) {
      reply(msg, { error: commandError('rate_limited', 'snapshots already requested') });
      return;
    }
    this.snapshotWaiters.push(msg);
    this.snapshotWanted = true;
    this.schedule();
  }

  /**
   * Public states of some auctions, answered like a command: only once every
   * event they reflect is durable, so a gateway never shows a version the log
   * might lose (an append in flight could still fail).
   */
  answerStates(msg: BusRequest, auctionIds: number[]): void {
    if (this.ended) {
      reply(msg, { error: commandError('unavailable', 'shard changing primary') });
      return;
    }
    const core = this.state.core;
    const states = auctionIds.map((id) => core.auctionState(id));
    this.releaseAfterInflight([
      { msg, parsed: [], results: [], body: { states, seq: core.lastSeq }, arrivedAt: this.clock.now() },
    ]);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.clock.soon(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  // --- the pipeline ----------------------------------------------------------

  /** Drains what has arrived, decides it, appends one batch. */
  private pump(): void {
    if (this.ended) return;
    const { core } = this.state;
    // Between batches, appends in flight or not: the image is of the state after the last decided batch.
    if (this.snapshotWanted && !this.state.snapshotWriting) this.takeSnapshot();
    if (this.inflight.length >= this.options.batchesInFlightMax) return;
    const t = Math.max(this.clock.now(), core.lastTimestampMs);
    const events: LogEvent[] = [];
    const requests: PendingRequest[] = [];
    const firstSeq = core.lastSeq + 1;
    try {
      for (let due = core.takeDue(t); due && events.length < this.options.batchEventsMax; due = core.takeDue(t)) {
        events.push(this.decide(due, t));
      }
      while (this.pending.length > 0) {
        const request = this.pending[0];
        if (events.length > 0 && events.length + request.parsed.length > this.options.batchEventsMax) break;
        this.pending.shift();
        this.pendingCommands -= request.parsed.length;
        request.queuedMs = t - request.arrivedAt;
        this.options.load?.queued(request.queuedMs);
        this.decideRequest(request, t, events);
        requests.push(request);
      }
      if (this.options.verify) core.verify();
    } catch (error) {
      this.fatal(error);
      return;
    }
    if (events.length === 0) {
      // Only duplicates and malformed commands: answer once what they point at is durable.
      this.releaseAfterInflight(requests);
    } else {
      this.appendBatch(firstSeq, t, events, requests);
    }
    if (this.pending.length > 0 || core.nextDueAt() <= t) this.schedule();
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
        const original = this.state.core.lookupBid(command.bidderId, command.bidId, command.auctionId);
        if (original) {
          request.results[i] = original;
          return;
        }
      }
      const event = this.decide(command, t, text);
      // Bid outcomes carry their seq already (the hot path: no second copy); others get it added.
      request.results[i] = event.outcome.type === 'bid' ? event.outcome : { ...event.outcome, seq: event.seq };
      events.push(event);
    });
  }

  private decide(command: Command, t: number, text?: CommandText): LogEvent {
    const seq = this.state.core.lastSeq + 1;
    const outcome = this.state.core.apply(command, seq, t);
    const event: LogEvent = { seq, command, outcome };
    if (text && Object.keys(text).length > 0) event.text = text;
    return event;
  }

  private appendBatch(firstSeq: number, t: number, events: LogEvent[], requests: PendingRequest[]): void {
    const batchMessage: LogBatch = { v: 1, shard: this.options.shard, writer: this.options.writer, t, events };
    const expectStreamSeq = this.state.expectStreamSeq++;
    // Each append names the one before it (shard/ports.ts: a pipelined append must not land after another writer's fence).
    const chainsOnto = this.state.expectMsgId;
    this.state.expectMsgId = logMsgId(this.options.shard, expectStreamSeq + 1, this.options.writer);
    const batch: Batch = {
      firstSeq,
      lastSeq: events[events.length - 1].seq,
      expectStreamSeq,
      sentAt: this.clock.now(),
      requests,
      settled: false,
      failed: false,
      append: Promise.resolve(),
    };
    batch.append = this.log
      .append(encodeLog(batchMessage), expectStreamSeq, this.options.writer, this.options.appendTimeoutMs, chainsOnto)
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
      this.fatal(new InvariantError(`append landed at ${streamSeq}, expected ${batch.expectStreamSeq + 1}`));
      return;
    }
    // Acks arrive in order on one connection; release from the front.
    const { state } = this;
    while (this.inflight.length > 0 && this.inflight[0].settled && !this.inflight[0].failed) {
      const done = this.inflight.shift()!;
      state.markDurable(done.expectStreamSeq + 1, done.lastSeq);
      state.logOursAt = done.sentAt;
      state.eventsSinceSnapshot += done.lastSeq - done.firstSeq + 1;
      state.appendsAcked += 1;
      state.eventsAcked += done.lastSeq - done.firstSeq + 1;
      for (const request of done.requests) answer(request);
    }
    if (this.ended) return;
    this.checkSnapshotDue();
    this.schedule();
  }

  /**
   * The append's outcome is unknown (or, with the fence's refusal, it did not
   * land because another writer did): nothing more is decided, every waiting
   * request hears `unavailable` now, and the copy is told.
   */
  private onAppendFailed(batch: Batch, error: unknown): void {
    batch.settled = true;
    if (this.ended) {
      if (!batch.failed) {
        batch.failed = true;
        for (const request of batch.requests)
          answerUnavailable(request, 'append failed: outcome unknown, retry with the same bidId');
      }
      return;
    }
    const deposed = error instanceof DeposedError && this.inflight[0] === batch;
    if (deposed)
      this.logger.error(
        { err: error, expectStreamSeq: batch.expectStreamSeq },
        'deposed: another writer appended to the shard log; stopped serving it',
      );
    else
      this.logger.warn(
        { err: error, expectStreamSeq: batch.expectStreamSeq },
        'append failed; resyncing from the stream',
      );
    this.end();
    this.abandon(
      deposed
        ? { inflight: 'shard changed primary: outcome unknown, retry with the same bidId', pending: 'shard deposed' }
        : { inflight: 'append failed: outcome unknown, retry with the same bidId', pending: 'engine resyncing' },
    );
    this.report({ kind: 'append-failed', error, deposed });
  }

  private releaseAfterInflight(requests: PendingRequest[]): void {
    if (requests.length === 0) return;
    const last = this.inflight[this.inflight.length - 1];
    if (last) last.requests.push(...requests);
    else for (const request of requests) answer(request);
  }

  private fatal(error: unknown): void {
    this.end();
    this.report({ kind: 'fatal', error });
  }

  // --- timers and snapshots --------------------------------------------------

  private armTimer(): void {
    this.timer?.();
    this.timer = null;
    if (this.ended) return;
    const due = this.state.core.nextDueAt();
    if (!Number.isFinite(due)) return;
    this.timer = this.clock.after(due - this.clock.now(), () => this.schedule());
  }

  private checkSnapshotDue(): void {
    const { state } = this;
    if (this.ended || state.eventsSinceSnapshot === 0) return;
    const due =
      state.eventsSinceSnapshot >= this.options.snapshotEveryEvents ||
      this.clock.now() - state.lastSnapshotAt >= this.options.snapshotEveryMs;
    if (
      due &&
      !this.snapshotWanted &&
      this.options.snapshotTurns.take(this.options.shard, this.clock.now(), state.lastSnapshotAt)
    ) {
      this.snapshotWanted = true;
      this.schedule();
    }
  }

  private takeSnapshot(): void {
    this.snapshotWanted = false;
    const waiters = this.snapshotWaiters;
    this.snapshotWaiters = [];
    const engineId = this.options.engineId;
    this.state.takeSnapshot((outcome) => {
      for (const msg of waiters) {
        if ('error' in outcome)
          reply(msg, { error: commandError('unavailable', `snapshot failed: ${outcome.error.message}`) });
        else reply(msg, { snapshot: outcome.snapshot, engineId, ms: outcome.ms, stallMs: outcome.stallMs });
      }
      if (this.snapshotWanted) this.schedule();
    });
  }
}

type Sub = { unsubscribe(): void };
