import { pino, type Logger } from 'pino';
import { ShardCopy } from '../../shard/copy.js';
import { adminSubjects } from '../../protocol/names.js';
import { decode, encode } from '../../protocol/index.js';
import type { BusPort, LeaseBucketPort, ShardLogPort } from '../../shard/ports.js';
import { LeaseBucketProbe, probeKey } from '../../replica/lease-bucket-probe.js';
import type { RoleTransition } from '../../protocol/cluster.js';
import { Checker } from './checker.js';
import { SimClient, type Answer } from './clients.js';
import { MemoryBus } from './memory-bus.js';
import { MemoryKv } from './memory-lease-store.js';
import { MemoryLog } from './memory-log.js';
import { MemorySnapshots } from './memory-snapshots.js';
import { RESTART_DELAY_MS, type SimOptions } from './options.js';
import { Random } from './random.js';
import { Scheduler, type SimNode } from './scheduler.js';

export const SHARD = 0;

/** A copy's record of its subscriptions and whether its stop() has resolved (stopped copies must be inert). */
type CopyGuard = { stopped: boolean; subscriptions: Set<string> };

/** Remembered bids: more than a run places (so no retry is ever forgotten), small enough to hash and verify often. */
const IDEMPOTENCY_ENTRIES = 2_048;

/** One engine process's copy of the shard: it may be killed and restarted (a new incarnation, same data directory). */
export class CopySlot {
  node!: SimNode;
  copy: ShardCopy | null = null;
  incarnation = 0;
  /** The copy is between placement's stop and its start again. */
  removed = false;
  /** What the copy running now may still do: nothing once its stop() resolved. */
  guard: CopyGuard = { stopped: false, subscriptions: new Set() };
  /** The running process's view of the lease bucket (a probe per process, as engine/process.ts has). */
  bucket!: LeaseBucketProbe;
  readonly snapshots: MemorySnapshots;

  constructor(
    readonly name: string,
    readonly index: number,
    scheduler: Scheduler,
  ) {
    this.snapshots = new MemorySnapshots(scheduler);
  }

  get writer(): string {
    return `${this.name}-w${this.incarnation}`;
  }
}

/**
 * The simulated world of one seed: a scheduler and simulated clock, one
 * in-memory log, lease bucket and bus, the copies of shard 0 (each the real
 * engine code), and clients. Every fault comes from `random`; the checker
 * watches everything.
 */
export class World {
  readonly scheduler = new Scheduler();
  readonly random: Random;
  readonly faultRandom: Random;
  readonly log: MemoryLog;
  readonly kv: MemoryKv;
  readonly bus: MemoryBus;
  readonly checker: Checker;
  readonly slots: CopySlot[] = [];
  readonly clients: SimClient[] = [];
  readonly answers: Answer[] = [];
  readonly trace: string[] = [];
  /** Every copy's transitions, as each reported them (the newest 10,000). */
  readonly transitions: (RoleTransition & { copy: string; incarnation: number })[] = [];
  private clientsRunning = true;
  private readonly logger: Logger;
  private readonly auctionIds: number[] = [];
  /** Armed by the stop-during-takeover fault: the next copy seen taking over is stopped by placement. */
  stopWhenTakingOver: { awayMs: number; until: number } | null = null;
  /** Fault switches the episodes turn on and off. */
  readonly faults = { appendTimeouts: 0, readErrors: 0, kvTimeouts: 0, kvDown: false, logDown: false };

  constructor(readonly options: SimOptions) {
    this.random = new Random(options.seed);
    this.faultRandom = this.random.fork();
    const io = this.random.fork();
    const config = { shard: SHARD, auctionsMax: options.auctionsMax, idempotencyEntriesMax: IDEMPOTENCY_ENTRIES };
    this.log = new MemoryLog(this.scheduler, {
      shard: SHARD,
      config,
      latencyMs: () => io.int(0, 3),
      // Down: the stream has no leader (NATS elects one): appends are refused at once, some time out unanswered.
      appendFault: () =>
        this.faults.logDown
          ? io.chance(0.2)
            ? 'lost-timeout'
            : 'refused'
          : io.chance(this.faults.appendTimeouts)
            ? io.chance(0.5)
              ? 'landed-timeout'
              : 'lost-timeout'
            : 'ok',
      readFault: () => (this.faults.logDown || io.chance(this.faults.readErrors) ? 'error' : 'ok'),
    });
    this.kv = new MemoryKv(this.scheduler, {
      latencyMs: () => io.int(0, 3),
      // Down: the bucket's stream has no leader (NATS elects one), so no write lands and none is answered.
      writeFault: () =>
        this.faults.kvDown
          ? 'lost-timeout'
          : io.chance(this.faults.kvTimeouts)
            ? io.chance(0.5)
              ? 'applied-timeout'
              : 'lost-timeout'
            : 'ok',
    });
    this.bus = new MemoryBus(this.scheduler, { latencyMs: () => io.int(0, 2) });
    this.checker = new Checker(this.log, config, () => `t=${this.scheduler.now - this.startedAt}ms`);
    this.logger = pino({ level: process.env.SIM_LOG ?? 'silent' }, pino.destination(2));
    for (let i = 0; i < options.copies; i++) this.slots.push(new CopySlot(`c${i}`, i, this.scheduler));
  }

  readonly startedAt = this.scheduler.now;

  note(line: string): void {
    this.trace.push(`t=${this.scheduler.now - this.startedAt}ms ${line}`);
    if (this.trace.length > 200) this.trace.shift();
  }

  // --- copies ------------------------------------------------------------------

  /** Starts a new incarnation of the slot's process with its copy of the shard. */
  boot(slot: CopySlot): void {
    slot.incarnation++;
    slot.node = this.scheduler.node(slot.writer);
    slot.snapshots.attach(slot.node);
    slot.bucket = new LeaseBucketProbe(
      this.kv.port(slot.node),
      this.scheduler.clockFor(slot.node),
      probeKey(slot.name),
      this.options.leaseRenewMs,
    );
    slot.bucket.start();
    this.startCopy(slot);
  }

  /** A copy in the slot's running process (after boot, or after placement gave the shard back). */
  startCopy(slot: CopySlot): void {
    const node = slot.node;
    const guard: CopyGuard = { stopped: false, subscriptions: new Set() };
    slot.guard = guard;
    const copy = new ShardCopy({
      shard: SHARD,
      bus: this.guardBus(slot, guard, this.bus.port(node)),
      log: this.guardLog(slot, guard, this.log.port(node)),
      snapshots: slot.snapshots,
      clock: this.scheduler.clockFor(node),
      logger: this.logger.child({ copy: slot.name, incarnation: slot.incarnation }),
      writer: slot.writer,
      engineId: slot.name,
      auctionsMax: this.options.auctionsMax,
      idempotencyEntriesMax: IDEMPOTENCY_ENTRIES,
      streamReplicas: 1,
      batchEventsMax: this.options.batchEventsMax,
      batchesInFlightMax: this.options.batchesInFlightMax,
      pendingCommandsMax: this.options.pendingCommandsMax,
      appendTimeoutMs: this.options.appendTimeoutMs,
      snapshotEveryEvents: this.options.snapshotEveryEvents,
      snapshotEveryMs: 2_000,
      lease: {
        store: this.guardLease(slot, guard, slot.bucket),
        ttlMs: this.options.leaseTtlMs,
        renewMs: this.options.leaseRenewMs,
      },
      preferFollow: slot.index > 0,
      verify: true,
      onTransition: (transition) => {
        this.transitions.push({ copy: slot.name, incarnation: slot.incarnation, ...transition });
        if (this.transitions.length > 10_000) this.transitions.shift();
        this.note(`${slot.name} ${transition.from} -> ${transition.to} (${transition.cause})`);
      },
      onFatal: (error) => {
        this.checker.fail(`${slot.name} broke an invariant: ${(error as Error).message}`);
        this.crash(slot, 'exit 70');
      },
    });
    slot.copy = copy;
    slot.removed = false;
    copy.start().catch((error: unknown) => {
      if (slot.copy !== copy || guard.stopped) return;
      this.note(`${slot.name} failed to start (${(error as Error).message}); its process exits`);
      this.crash(slot, 'exit 1');
    });
  }

  /** Placement moves the shard away from this process: stop the copy, keep the process. */
  async removeCopy(slot: CopySlot, why: string): Promise<void> {
    const copy = slot.copy;
    if (!copy || slot.removed) return;
    slot.removed = true;
    this.note(`${slot.name} stops its copy (${why}) in state ${copy.roleName}`);
    const guard = slot.guard;
    try {
      await copy.stop();
    } catch (error) {
      this.checker.fail(`${slot.name}'s stop() threw in state ${copy.roleName}: ${(error as Error).message}`);
    }
    guard.stopped = true;
    if (guard.subscriptions.size > 0)
      this.checker.fail(`${slot.name} stopped but still serves ${[...guard.subscriptions].join(', ')}`);
    if (slot.copy === copy) slot.copy = null;
  }

  /** The process dies (SIGKILL or exit): nothing of it runs again; its supervisor restarts it. */
  crash(slot: CopySlot, why: string): void {
    if (slot.node.dead) return;
    this.note(`${slot.name} process dies (${why})`);
    this.scheduler.kill(slot.node);
    slot.copy = null;
    this.scheduler.schedule(null, RESTART_DELAY_MS, () => this.boot(slot));
  }

  private guardBus(slot: CopySlot, guard: CopyGuard, bus: BusPort): BusPort {
    return {
      flush: () => bus.flush(),
      serve: (subject, handler) => {
        if (guard.stopped) this.checker.fail(`${slot.name} subscribed to ${subject} after it was stopped`);
        const sub = bus.serve(subject, handler);
        guard.subscriptions.add(subject);
        return {
          unsubscribe: () => {
            guard.subscriptions.delete(subject);
            sub.unsubscribe();
          },
        };
      },
    };
  }

  private guardLog(slot: CopySlot, guard: CopyGuard, log: ShardLogPort): ShardLogPort {
    return {
      ensure: (w, r) => log.ensure(w, r),
      lastStreamSeq: () => log.lastStreamSeq(),
      follow: (after) => log.follow(after),
      read: (after, to) => log.read(after, to),
      append: (bytes, expect, writer, timeoutMs, chainsOnto) => {
        if (guard.stopped) this.checker.fail(`${slot.name} appended to the log after it was stopped`);
        return log.append(bytes, expect, writer, timeoutMs, chainsOnto);
      },
    };
  }

  private guardLease(slot: CopySlot, guard: CopyGuard, store: LeaseBucketPort): LeaseBucketPort {
    const written = (what: string) => {
      if (guard.stopped) this.checker.fail(`${slot.name} wrote the lease (${what}) after it was stopped`);
    };
    return {
      get: (key) => store.get(key),
      watch: (key, onEntry) => store.watch(key, onEntry),
      create: (key, value) => (written('create'), store.create(key, value)),
      update: (key, value, revision, timeoutMs) => (written('update'), store.update(key, value, revision, timeoutMs)),
      delete: (key, revision) => (written('delete'), store.delete(key, revision)),
      put: (key, value, timeoutMs) => (written('put'), store.put(key, value, timeoutMs)),
      writableSince: () => store.writableSince(),
    };
  }

  // --- clients -----------------------------------------------------------------

  startClients(): void {
    for (let i = 0; i < this.options.clients; i++) {
      const node = this.scheduler.node(`client-${i}`);
      const clock = this.scheduler.clockFor(node);
      const bus = this.bus.client(node);
      const random = this.random.fork();
      const client = new SimClient(
        i,
        {
          random,
          now: () => clock.now(),
          sleep: (ms) => clock.sleep(ms),
          request: (subject, data, timeoutMs) => bus.request(subject, data, timeoutMs),
          auctions: () => this.auctionIds,
          running: () => this.clientsRunning,
          onAnswer: (answer) => this.onAnswer(answer),
        },
        this.options.requestTimeoutMs,
      );
      this.clients.push(client);
      void client.run();
    }
  }

  stopClients(): void {
    this.clientsRunning = false;
  }

  lastAnswerAt = 0;
  /** The longest time between two decided answers since the first (how long clients went unserved). */
  longestSilenceMs = 0;

  private onAnswer(answer: Answer): void {
    this.answers.push(answer);
    if (this.answers.length > 200_000) this.answers.shift();
    if (this.lastAnswerAt > 0)
      this.longestSilenceMs = Math.max(this.longestSilenceMs, this.scheduler.now - this.lastAnswerAt);
    this.lastAnswerAt = this.scheduler.now;
    this.checker.checkAnswer(answer);
    const result = answer.result as { type?: string; status: string; auctionId?: number };
    if (result.type === 'create' && result.status === 'accepted' && result.auctionId) {
      this.auctionIds.push(result.auctionId);
      if (this.auctionIds.length > this.options.auctionsMax / 2) this.auctionIds.shift();
    }
  }

  // --- operators ---------------------------------------------------------------

  /** `auctionctl step-down`: asks the shard's primary to hand over to `to`. */
  async stepDown(to: CopySlot): Promise<string> {
    const node = this.scheduler.node(`operator-${this.scheduler.now}`);
    try {
      const reply = decode(
        await this.bus
          .client(node)
          .request(adminSubjects.engine(SHARD), encode({ op: 'step-down', to: to.name }), 3_000),
      ) as { error?: { code: string }; to?: string };
      return reply.error ? `refused: ${reply.error.code}` : `handed over to ${reply.to}`;
    } catch (error) {
      return `no answer: ${(error as Error).message}`;
    } finally {
      this.scheduler.kill(node);
    }
  }

  // --- checks ------------------------------------------------------------------

  /** Compares every live copy's state with the log at its position. */
  checkCopies(): void {
    this.checker.absorbLog();
    for (const slot of this.slots) {
      const copy = slot.copy;
      if (!copy || slot.node.dead || slot.node.paused) continue;
      const report = copy.statusReport();
      if (report.status === 'starting') continue;
      this.checker.checkCopy(slot.name, {
        status: report.status,
        streamSeq: report.streamSeq,
        lastSeq: report.lastSeq,
        durableSeq: report.durableSeq,
        stateHash: copy.stateHash(),
      });
    }
  }

  serving(): CopySlot[] {
    return this.slots.filter((s) => s.copy && !s.node.dead && s.copy.roleName === 'serving');
  }
}
