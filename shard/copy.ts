import type { Logger } from 'pino';
import { InvariantError } from '../engine/core/index.js';
import { Primary, type PrimaryEvent, type PrimaryOptions } from '../engine/primary.js';
import { reply } from '../engine/answers.js';
import { Follower, type FollowerEvent } from '../replica/follower.js';
import { ShardLease } from '../replica/lease.js';
import { takeOver } from '../replica/takeover.js';
import { handOver, stepDownTarget } from '../engine/step-down.js';
import { commandError, subjects } from '../protocol/index.js';
import type { ShardCopyStatus } from '../protocol/cluster.js';
import { CopyState } from './copy-state.js';
import {
  DeposedError,
  LogLostError,
  type BusPort,
  type BusRequest,
  type Clock,
  type LeaseBucketPort,
  type ShardLogPort,
  type SnapshotPort,
} from './ports.js';
import { answerQuery } from './queries.js';
import type { LoadObserver } from './ports.js';
import { SnapshotTurns } from './snapshot-turns.js';
import { allowed, LEASED_ROLES, RoleTransitionError, type RoleName } from './roles.js';
import { type RoleTransition } from '../protocol/cluster.js';

export type ShardCopyOptions = {
  shard: number;
  bus: BusPort;
  log: ShardLogPort;
  snapshots: SnapshotPort;
  clock: Clock;
  logger: Logger;
  /** This process's instance id, written into every batch. */
  writer: string;
  /** The engine's stable id (placement, the lease, step-down targets). */
  engineId: string;
  /** Used when the stream is created; an existing stream's recorded values win. */
  auctionsMax: number;
  idempotencyEntriesMax: number;
  streamReplicas: number;
  /** Events in one log message. */
  batchEventsMax?: number;
  /** Appends awaiting their acknowledgement at once. */
  batchesInFlightMax?: number;
  /** Commands waiting to be decided; beyond it requests are shed (`overloaded`). */
  pendingCommandsMax?: number;
  /** A request arriving while the oldest queued one has waited this long (ms) is shed (`overloaded`). */
  queueMsMax?: number;
  /** Where the pipeline reports its queue times and shed commands (metrics). */
  load?: LoadObserver;
  appendTimeoutMs?: number;
  snapshotEveryEvents?: number;
  snapshotEveryMs?: number;
  /** Shared by the shards of one process: their periodic snapshots begin one at a time (default: this copy's own). */
  snapshotTurns?: SnapshotTurns;
  /** Leadership: the copy serves while it holds the shard's lease in this store and follows the log otherwise. */
  lease: { store: LeaseBucketPort; ttlMs: number; renewMs: number };
  /** Start following even when the lease is free (the `replica` role); it still takes over on expiry. */
  preferFollow?: boolean;
  /** Sweep every invariant of the core after each batch (default: VERIFY=1 in the environment; tests and soak runs). */
  verify?: boolean;
  /** A broken invariant: the owner stops the process (exit 70); the copy has already stopped deciding. */
  onFatal: (error: unknown) => void;
  /** Every change of role, after it happened (logs, metrics, tests). */
  onTransition?: (transition: RoleTransition) => void;
};

/** A role and the resources only it holds. */
type Role =
  | { name: 'starting' }
  | { name: 'following'; follower: Follower }
  | { name: 'taking-over'; task: Promise<void> }
  | { name: 'serving'; primary: Primary }
  | { name: 'stepping-down'; primary: Primary; task: Promise<void> }
  | { name: 'resyncing'; task: Promise<void> }
  | { name: 'deposed'; task: Promise<void> }
  | { name: 'stopped' };

/** What the copy's queue carries: reports of its role's resources, operators' requests, the owner's stop. */
type CopyEvent =
  | FollowerEvent
  | PrimaryEvent
  | { kind: 'started'; lead: boolean }
  | { kind: 'took-over' }
  | { kind: 'takeover-failed'; why: string }
  | { kind: 'lease-lost'; why: string }
  | { kind: 'resynced' }
  | { kind: 'rebuilt' }
  | { kind: 'deposed-found'; error: Error }
  | { kind: 'handed-over'; to: string; ms: number }
  | { kind: 'step-down-failed'; error: Error }
  | { kind: 'log-lost'; error: LogLostError }
  | { kind: 'stop'; done: () => void };

/** Events waiting at once: each resource reports a few, so more is a bug (fatal). */
const QUEUE_MAX = 1_024;
/** Operators' step-downs waiting at once; more are refused at once. */
const OPERATOR_EVENTS_QUEUED_MAX = 64;

const LOST_SHARD = {
  inflight: 'shard changed primary: outcome unknown, retry with the same bidId',
  pending: 'shard deposed',
};
const RESYNCING = {
  inflight: 'append failed: outcome unknown, retry with the same bidId',
  pending: 'engine resyncing',
};
const FENCE_REFUSED = 'append refused by the fence';
const STOPPING = {
  inflight: 'engine stopping: outcome unknown, retry with the same bidId',
  pending: 'engine stopping',
};

/**
 * One copy of a shard in an engine process: primary or hot standby, by its
 * role. The role changes only in `transition`, which checks the edge table
 * (shard/roles.ts), disposes the old role's resources and starts the new
 * one's. Timers, consumers, appends, the lease, operators and placement never
 * change the role from their callbacks: they post an event, and the queue
 * handles events one at a time; an event posted by a role that has ended
 * since is dropped (its epoch is old).
 *
 * About 500 lines on purpose: the role value, the queue, the transition
 * function and the tasks each role starts are one state machine, read
 * together; what the roles hold lives elsewhere (replica/follower.ts,
 * replica/takeover.ts, engine/primary.ts, engine/step-down.ts, copy-state.ts).
 */
export class ShardCopy {
  readonly shard: number;
  private role: Role = { name: 'starting' };
  /** A fatal error was reported to the owner (once). */
  private failed = false;
  /** Counts transitions; an event carries the epoch it was posted in. */
  private epoch = 0;
  private readonly queue: { event: CopyEvent; epoch: number | null; primary?: Primary }[] = [];
  private draining = false;
  private readonly state: CopyState;
  private readonly lease: ShardLease;
  private readonly logger: Logger;
  private readonly verify: boolean;
  private readonly primaryOptions: PrimaryOptions;
  private nodeControl: { unsubscribe(): void } | null = null;
  private becameLeaderAt = 0;
  private takeOverStartedAt = 0;
  /** Resolves start() once the copy follows, serves or stopped (a start that leads returns serving). */
  private startSettled: (() => void) | null = null;
  readonly transitions = new Map<string, number>();

  constructor(private readonly options: ShardCopyOptions) {
    this.shard = options.shard;
    this.logger = options.logger.child({ shard: options.shard });
    this.verify = options.verify ?? process.env.VERIFY === '1';
    this.state = new CopyState(
      options.shard,
      { auctionsMax: options.auctionsMax, idempotencyEntriesMax: options.idempotencyEntriesMax },
      options.log,
      options.snapshots,
      options.clock,
      this.logger,
    );
    this.lease = new ShardLease(
      options.lease.store,
      options.clock,
      options.shard,
      { engineId: options.engineId, writer: options.writer },
      options.lease.ttlMs,
      options.lease.renewMs,
      this.logger,
      () => this.state.durableStreamSeq,
    );
    this.primaryOptions = {
      shard: options.shard,
      writer: options.writer,
      engineId: options.engineId,
      batchEventsMax: options.batchEventsMax ?? 4_096,
      batchesInFlightMax: options.batchesInFlightMax ?? 8,
      pendingCommandsMax: options.pendingCommandsMax ?? 100_000,
      queueMsMax: options.queueMsMax ?? 500,
      load: options.load,
      appendTimeoutMs: options.appendTimeoutMs ?? 2_000,
      snapshotEveryEvents: options.snapshotEveryEvents ?? 1_000_000,
      snapshotEveryMs: options.snapshotEveryMs ?? 60_000,
      snapshotTurns: options.snapshotTurns ?? new SnapshotTurns(),
      verify: this.verify,
    };
  }

  /** The copy's role. */
  get roleName(): RoleName {
    return this.role.name;
  }

  /** The state hash of this copy's core (what every copy must share at the same position). */
  stateHash(): string {
    return this.state.core?.stateHash() ?? '';
  }

  /**
   * Loads the newest snapshot plus the log's tail, watches the lease, then
   * follows (or takes over at once when the lease is free). Rejects when the
   * log or the lease cannot be reached at all: the owner's process exits and
   * its supervisor starts it again.
   */
  async start(): Promise<void> {
    const { config } = await this.options.log.ensure(
      { shard: this.shard, ...this.state.config },
      this.options.streamReplicas,
    );
    Object.assign(this.state.config, {
      auctionsMax: config.auctionsMax,
      idempotencyEntriesMax: config.idempotencyEntriesMax,
    });
    try {
      await this.state.rebuild();
    } catch (error) {
      if (!(error instanceof LogLostError)) throw error;
      // The process lives on for its other shards; this one stays stopped (restarting would only find it again).
      const settled = new Promise<void>((resolve) => (this.startSettled = resolve));
      this.post({ kind: 'log-lost', error }, null);
      await settled;
      return;
    }
    if (this.role.name !== 'starting') return; // stopped meanwhile
    this.nodeControl = this.options.bus.serve(subjects.nodeControl(this.shard, this.options.engineId), (msg) =>
      answerQuery(msg, this),
    );
    await this.lease.watch();
    if (this.role.name !== 'starting') {
      this.lease.close(); // stopped while the watch opened
      return;
    }
    const settled = new Promise<void>((resolve) => (this.startSettled = resolve));
    this.post({ kind: 'started', lead: !this.options.preferFollow && this.lease.expired() }, this.epoch);
    await settled;
  }

  /** Stops the copy: no more commands, appends in flight answered, a snapshot, the lease released. Resolves when done. */
  stop(): Promise<void> {
    return new Promise<void>((done) => this.post({ kind: 'stop', done }, null));
  }

  // --- the queue ---------------------------------------------------------------

  /**
   * Queues an event. `epoch`: the role it came from (dropped if that role has
   * ended by the time it is handled); null: handled whatever the role. A
   * broken invariant is acted on at once (the owner exits): nothing may be
   * decided on corrupt state while the queue is busy.
   */
  private post(event: CopyEvent, epoch: number | null, primary?: Primary): void {
    if (event.kind === 'fatal') {
      this.failLoudly(event.error);
      epoch = null;
    }
    if (event.kind === 'step-down' && this.queue.length >= OPERATOR_EVENTS_QUEUED_MAX) {
      reply(event.msg, { error: commandError('unavailable', 'shard busy changing roles; try again') });
      return;
    }
    if (this.queue.length >= QUEUE_MAX) {
      // Resources report a bounded number of events each; more means a loop in the copy.
      this.failLoudly(new InvariantError(`shard ${this.shard}: ${this.queue.length} events queued`));
      return;
    }
    this.queue.push({ event, epoch, primary });
    if (!this.draining) void this.drain();
  }

  /** A poster bound to the current role: what it posts after the role ended is dropped. */
  private reporter<E extends CopyEvent>(): (event: E) => void {
    const epoch = this.epoch;
    return (event) => this.post(event, epoch);
  }

  private current(entry: { epoch: number | null; primary?: Primary }): boolean {
    if (entry.primary) {
      const role = this.role;
      return (role.name === 'serving' || role.name === 'stepping-down') && role.primary === entry.primary;
    }
    return entry.epoch === null || entry.epoch === this.epoch;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const entry = this.queue.shift()!;
        if (!this.current(entry)) {
          // From a role that has ended; an operator still hears why nothing happened.
          if (entry.event.kind === 'step-down')
            reply(entry.event.msg, { error: commandError('unavailable', `shard ${this.role.name}`) });
          continue;
        }
        try {
          await this.handle(entry.event);
        } catch (error) {
          this.failLoudly(error);
          this.halt('role transition failed');
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async handle(event: CopyEvent): Promise<void> {
    const role = this.role.name;
    switch (event.kind) {
      case 'stop':
        if (role !== 'stopped') {
          await this.transition('stopped', 'stop');
          await this.shutDown();
        }
        this.startSettled?.();
        event.done();
        return;
      case 'fatal':
        this.halt('fatal error'); // the owner heard at once (post); this stops what is left of the role
        return;
      case 'log-lost':
        this.logger.error(
          { err: event.error, role, streamSeq: this.state.durableStreamSeq },
          'the shard log lost acknowledged messages; this copy stops and will not serve the shard',
        );
        this.halt('log lost acknowledged messages');
        this.startSettled?.();
        return;
      case 'started':
        return this.transition(
          event.lead ? 'taking-over' : 'following',
          event.lead ? 'lease free at start' : 'started',
        );
      case 'lease-expired':
        return this.transition('taking-over', `lease of ${this.lease.holder?.engineId ?? 'nobody'} expired`);
      case 'follower-died':
        this.logger.warn({ err: event.error }, 'follower stopped reading; reopening');
        return this.transition('following', `consumer died: ${(event.error as Error)?.message}`);
      case 'took-over':
        return this.transition('serving', 'fenced the log');
      case 'takeover-failed':
        return this.transition('following', event.why);
      case 'lease-lost':
        if (role === 'taking-over') return this.transition('following', event.why);
        if (role === 'serving' || role === 'stepping-down' || role === 'resyncing')
          return this.transition('deposed', event.why);
        return;
      case 'append-failed':
        return this.transition(
          event.deposed ? 'deposed' : 'resyncing',
          event.deposed ? FENCE_REFUSED : `append failed: ${(event.error as Error)?.message}`,
        );
      case 'step-down':
        return this.beginStepDown(event.msg, event.to);
      case 'handed-over':
        return this.transition('following', `handed over to ${event.to}`);
      case 'step-down-failed':
        return this.transition('deposed', `step-down failed: ${event.error.message}`);
      case 'resynced':
        return this.transition('serving', 'resynced');
      case 'deposed-found':
        return this.transition('deposed', event.error.message);
      case 'rebuilt':
        return this.transition('following', 'rebuilt after losing the shard');
    }
  }

  // --- transitions -------------------------------------------------------------

  /** The one place the role changes: checks the edge, ends the old role, starts the new one, reports. */
  private async transition(to: RoleName, cause: string, operator?: { msg: BusRequest; to: string }): Promise<void> {
    const old = this.role;
    if (!allowed(old.name, to)) throw new RoleTransitionError(old.name, to, cause);
    this.epoch++;
    await this.leave(old, to);
    await this.leaseOnLeaving(old.name, to);
    this.role = await this.enter(to, old, cause, operator);
    this.reportTransition(old.name, to, cause);
  }

  private reportTransition(from: RoleName, to: RoleName, cause: string): void {
    const key = `${from}->${to}`;
    this.transitions.set(key, (this.transitions.get(key) ?? 0) + 1);
    this.logger.info({ from, to, cause, streamSeq: this.state.durableStreamSeq }, 'role');
    this.options.onTransition?.({
      shard: this.shard,
      from,
      to,
      cause,
      at: this.options.clock.now(),
    } satisfies RoleTransition);
    if (to === 'following' || to === 'serving' || to === 'stopped') {
      this.startSettled?.();
      this.startSettled = null;
    }
  }

  /** Disposes what only the old role held (the pipeline goes on into stepping-down). */
  private async leave(old: Role, to: RoleName): Promise<void> {
    switch (old.name) {
      case 'following':
        await old.follower.dispose();
        return;
      case 'serving':
        if (to === 'stepping-down') return;
        await old.primary.dispose(
          to === 'stopped' ? 'finish' : 'abandon',
          to === 'stopped' ? STOPPING : to === 'deposed' ? LOST_SHARD : RESYNCING,
        );
        return;
      case 'stepping-down':
        // End the pipeline first: a drain must not go on deciding after a stop or a lost lease.
        await old.primary.dispose(
          to === 'stopped' ? 'finish' : 'abandon',
          to === 'stopped' ? STOPPING : to === 'deposed' ? LOST_SHARD : RESYNCING,
        );
        await old.task;
        return;
      case 'taking-over':
      case 'resyncing':
      case 'deposed':
        await old.task; // it sees its epoch end and stops at its next step
        return;
      case 'starting':
      case 'stopped':
        return;
    }
  }

  /** The lease is held from taking over to the end of leadership: renewed all along, dropped or released on the way out. */
  private async leaseOnLeaving(from: RoleName, to: RoleName): Promise<void> {
    if (!LEASED_ROLES.includes(from) || LEASED_ROLES.includes(to)) return;
    // A stop hands over cleanly (the next primary need not wait out the TTL); losing the shard only forgets it.
    if (to === 'stopped') await this.lease.release();
    else this.lease.drop();
  }

  private async enter(
    to: RoleName,
    old: Role,
    cause: string,
    operator?: { msg: BusRequest; to: string },
  ): Promise<Role> {
    switch (to) {
      case 'starting':
        return { name: 'starting' };
      case 'following': {
        const follower = new Follower(
          this.state,
          this.options.log,
          this.lease,
          this.options.clock,
          this.logger,
          {
            renewMs: this.options.lease.renewMs,
            snapshotEveryEvents: this.primaryOptions.snapshotEveryEvents,
            snapshotTurns: this.primaryOptions.snapshotTurns,
            verify: this.verify,
          },
          this.reporter(),
        );
        follower.start(old.name === 'following' ? 200 : 0);
        this.logger.info(
          { streamSeq: this.state.durableStreamSeq, holder: this.lease.holder?.engineId },
          'following shard',
        );
        return { name: 'following', follower };
      }
      case 'taking-over':
        this.takeOverStartedAt = this.options.clock.now();
        return { name: 'taking-over', task: this.runTakeOver(this.epoch) };
      case 'serving': {
        const primary: Primary = new Primary(
          this.state,
          this.options.log,
          this.options.bus,
          this.options.clock,
          this.logger,
          this.primaryOptions,
          (event) => this.post(event, null, primary),
          (msg) => answerQuery(msg, this),
        );
        await primary.start();
        const now = this.options.clock.now();
        if (old.name === 'taking-over')
          this.logger.warn(
            { ms: now - this.takeOverStartedAt, previous: this.lease.holder?.engineId },
            'took over the shard',
          );
        if (old.name === 'resyncing')
          this.logger.info(
            { lastSeq: this.state.core.lastSeq, streamSeq: this.state.durableStreamSeq },
            'resynced; serving again',
          );
        this.becameLeaderAt = now;
        this.logger.info(
          {
            lastSeq: this.state.core.lastSeq,
            streamSeq: this.state.durableStreamSeq,
            auctionsLive: this.state.core.auctionsLive,
          },
          'serving shard',
        );
        return { name: 'serving', primary };
      }
      case 'stepping-down': {
        if (old.name !== 'serving' || !operator)
          throw new RoleTransitionError(old.name, to, 'stepping down needs the pipeline and the operator');
        return {
          name: 'stepping-down',
          primary: old.primary,
          task: this.runHandOver(this.epoch, old.primary, operator),
        };
      }
      case 'resyncing':
        return { name: 'resyncing', task: this.runRebuild(this.epoch, 'resyncing') };
      case 'deposed':
        // A refused append has said so already, before answering anyone.
        if (cause !== FENCE_REFUSED)
          this.logger.error(
            { streamSeq: this.state.durableStreamSeq, cause },
            'deposed: another writer appended to the shard log; stopped serving it',
          );
        return { name: 'deposed', task: this.runRebuild(this.epoch, 'deposed') };
      case 'stopped':
        return { name: 'stopped' };
    }
  }

  // --- the roles' work -----------------------------------------------------------

  /** Catch up, take the lease, fence the log; reports the outcome (dropped if the role ended meanwhile). */
  private async runTakeOver(epoch: number): Promise<void> {
    const report = this.reporter<CopyEvent>();
    const current = () => this.epoch === epoch;
    try {
      const outcome = await takeOver({
        state: this.state,
        log: this.options.log,
        lease: this.lease,
        clock: this.options.clock,
        logger: this.logger,
        writer: this.options.writer,
        engineId: this.options.engineId,
        appendTimeoutMs: this.primaryOptions.appendTimeoutMs,
        current,
        onLeaseLost: (why) => this.post({ kind: 'lease-lost', why }, null),
        // The pipeline, not the role's name: after a failed append the role stays `serving` until every append in
        // flight has settled (up to the append timeout, 2 s, past a 1 s TTL), deciding nothing meanwhile.
        deciding: () => {
          const role = this.role;
          return (role.name === 'serving' || role.name === 'stepping-down') && role.primary.stillDeciding;
        },
      });
      if (outcome.fenced) report({ kind: 'took-over' });
      else report({ kind: 'takeover-failed', why: outcome.why });
    } catch (error) {
      if (error instanceof InvariantError) report({ kind: 'fatal', error });
      else if (error instanceof LogLostError) report({ kind: 'log-lost', error });
      else {
        this.logger.error({ err: error }, 'takeover failed; following again');
        report({ kind: 'takeover-failed', why: `takeover failed: ${(error as Error).message}` });
      }
    }
  }

  /**
   * Rebuilds from snapshot and log (retrying transient failures) for as long
   * as the role lasts. Resyncing checks that nobody else wrote after our last
   * durable batch (else we were deposed while our append's outcome was unknown).
   */
  private async runRebuild(epoch: number, role: 'resyncing' | 'deposed'): Promise<void> {
    const report = this.reporter<CopyEvent>();
    for (let attempt = 1; this.epoch === epoch; attempt++) {
      try {
        if (
          !(await this.state.rebuild(
            role === 'resyncing' ? this.options.writer : undefined,
            () => this.epoch === epoch,
          ))
        )
          return;
        report(role === 'resyncing' ? { kind: 'resynced' } : { kind: 'rebuilt' });
        return;
      } catch (error) {
        if (error instanceof DeposedError) return report({ kind: 'deposed-found', error });
        if (error instanceof LogLostError) return report({ kind: 'log-lost', error });
        if (error instanceof InvariantError) return report({ kind: 'fatal', error });
        this.logger.warn({ err: error, attempt, role }, 'rebuild failed; retrying');
        await this.options.clock.sleep(Math.min(1_000, 50 * attempt));
      }
    }
  }

  /**
   * A clean hand-over to the replica `to` (auctionctl step-down): stop
   * intake, decide what is queued, wait until every append is acknowledged,
   * write the lease naming `to`, follow. Nothing acknowledged is lost and
   * nothing is decided twice; commands sent meanwhile find no responder and
   * are retried by their senders with the same bidId.
   */
  private async beginStepDown(msg: BusRequest, to: string): Promise<void> {
    const refuse = (code: 'invalid_request' | 'unavailable', message: string) =>
      reply(msg, { error: commandError(code, message) });
    const target = stepDownTarget(to, this.options.engineId);
    if (typeof target !== 'string') return refuse('invalid_request', target.error);
    if (this.role.name !== 'serving') return refuse('unavailable', `shard ${this.role.name}`);
    await this.transition('stepping-down', `step-down to ${target}`, { msg, to: target });
  }

  /** The hand-over's work for the stepping-down role entered at `epoch`. */
  private runHandOver(epoch: number, primary: Primary, operator: { msg: BusRequest; to: string }): Promise<void> {
    const refuse = (message: string) => reply(operator.msg, { error: commandError('unavailable', message) });
    const current = () => this.epoch === epoch;
    return handOver({ primary, lease: this.lease, to: operator.to, clock: this.options.clock, current }).then(
      (ms) => {
        // Interrupted before the lease was written (an append failed, a stop, the lease lost): the operator hears it.
        if (ms === null) return refuse('step-down interrupted: the shard is changing roles');
        const report = {
          from: this.options.engineId,
          to: operator.to,
          streamSeq: this.state.durableStreamSeq,
          lastSeq: this.state.durableSeq,
          ms,
        };
        this.logger.warn(report, 'stepped down');
        reply(operator.msg, report);
        this.post({ kind: 'handed-over', to: operator.to, ms }, epoch);
      },
      (error: unknown) => {
        this.logger.error({ err: error }, 'step-down failed');
        refuse(`step-down failed: ${(error as Error).message}`);
        // The lease is in an unknown state: stop leading; whoever holds it leads.
        this.post({ kind: 'step-down-failed', error: error as Error }, epoch);
      },
    );
  }

  /** After the last role: the newest state on disk, the lease given up, nothing left subscribed. */
  private async shutDown(): Promise<void> {
    this.nodeControl?.unsubscribe();
    this.nodeControl = null;
    if (this.state.core) await this.state.snapshotIfWorthIt();
    this.lease.close();
    this.logger.info({ lastSeq: this.state.durableSeq }, 'stopped');
  }

  /** A broken invariant (or a transition that threw): said once, loudly, to the log and the owner (which exits 70). */
  private failLoudly(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.logger.fatal(
      { err: error, role: this.role.name },
      error instanceof InvariantError ? 'invariant broken; exiting' : 'role transition failed; exiting',
    );
    this.options.onFatal(error);
  }

  /**
   * After a fatal error or a log that lost messages: whatever the role holds
   * stops at once; the copy is stopped and moves no more. The lease's key is
   * left as it is: its last holder's streamSeq tells the next copy what the
   * log lost.
   */
  private halt(cause: string): void {
    const role = this.role;
    if (role.name === 'stopped') return;
    this.epoch++;
    if (role.name === 'serving' || role.name === 'stepping-down') void role.primary.dispose('abandon', LOST_SHARD);
    if (role.name === 'following') void role.follower.dispose();
    this.lease.drop();
    this.lease.close();
    this.nodeControl?.unsubscribe();
    this.nodeControl = null;
    this.role = { name: 'stopped' };
    this.reportTransition(role.name, 'stopped', cause);
  }

  // --- what the copy tells about itself --------------------------------------------

  /** The pipeline while this copy serves or steps down (the `states` query needs it). */
  get primary(): Primary | null {
    return this.role.name === 'serving' || this.role.name === 'stepping-down' ? this.role.primary : null;
  }

  get copyState(): CopyState {
    return this.state;
  }

  /** What this copy of the shard knows about itself (control op `status`, process status). */
  statusReport(): ShardCopyStatus & Record<string, unknown> {
    const role = this.role;
    const live = role.name === 'serving' || role.name === 'stepping-down' ? role.primary : null;
    const { state } = this;
    return {
      shard: this.shard,
      status: role.name,
      writer: this.options.writer,
      engineId: this.options.engineId,
      lastSeq: state.core?.lastSeq ?? 0,
      durableSeq: state.durableSeq,
      streamSeq: state.durableStreamSeq,
      auctionsLive: state.core?.auctionsLive ?? 0,
      auctionsCreated: state.core?.auctionsCreated ?? 0,
      pendingCommands: live?.pendingCommandCount ?? 0,
      inflightBatches: live?.inflightBatches ?? 0,
      appendsAcked: state.appendsAcked,
      eventsAcked: state.eventsAcked,
      lag: state.lag,
      leaseHolder: this.lease.holder?.engineId ?? null,
      leaderSince: this.becameLeaderAt,
      snapshot: state.snapshot,
      config: state.config,
      transitions: Object.fromEntries(this.transitions),
    };
  }
}
