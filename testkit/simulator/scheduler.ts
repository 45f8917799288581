import type { Cancel, Clock } from '../../shard/ports.js';

/** Events queued at once, deferred ones included; a run that needs more is a runaway (a timer loop), not a bigger run. */
export const EVENTS_MAX = 1_000_000;

/** Node's timers take delays up to 2^31 - 1 ms; shard/node-clock.ts clamps to it, and so does the simulated clock. */
const DELAY_MAX_MS = 2 ** 31 - 1;

/** Cancelled events are swept out of the queue once there are this many and they are half of it. */
const SWEEP_AT = 4_096;

type SimEvent = {
  at: number;
  /** Insertion order: ties in time run in it. */
  order: number;
  node: SimNode | null;
  fn: () => void;
  where: 'queued' | 'deferred' | 'done';
  cancelled: boolean;
};

type NodeState = { paused: boolean; dead: boolean; deferred: SimEvent[] };

/** The scheduler's view of each node; module-private so that only pause, resume and kill change it. */
const states = new WeakMap<SimNode, NodeState>();

const stateOf = (node: SimNode): NodeState => states.get(node) as NodeState;

/**
 * One incarnation of a simulated process. A restart is a new SimNode with the
 * same name: the old one stays dead, so nothing it had scheduled can run in
 * the new process.
 */
export class SimNode {
  constructor(readonly name: string) {
    states.set(this, { paused: false, dead: false, deferred: [] });
  }

  /** Stopped (SIGSTOP): its due events wait until resume. */
  get paused(): boolean {
    return stateOf(this).paused;
  }

  /** Killed: its events are dropped, now and later. */
  get dead(): boolean {
    return stateOf(this).dead;
  }
}

/** A binary min-heap of events by (time, insertion order). */
class EventHeap {
  private items: SimEvent[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): SimEvent | undefined {
    return this.items[0];
  }

  push(event: SimEvent): void {
    this.items.push(event);
    this.up(this.items.length - 1);
  }

  pop(): SimEvent | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (top !== undefined && last !== undefined && this.items.length > 0) {
      this.items[0] = last;
      this.down(0);
    }
    return top;
  }

  /** Keeps only the events `keep` accepts, in heap order again. */
  filter(keep: (event: SimEvent) => boolean): SimEvent[] {
    const dropped = this.items.filter((e) => !keep(e));
    this.items = this.items.filter(keep);
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
    return dropped;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(this.items[i], this.items[parent])) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < this.items.length && before(this.items[left], this.items[least])) least = left;
      if (right < this.items.length && before(this.items[right], this.items[least])) least = right;
      if (least === i) return;
      this.swap(i, least);
      i = least;
    }
  }

  private swap(a: number, b: number): void {
    const item = this.items[a];
    this.items[a] = this.items[b];
    this.items[b] = item;
  }
}

const before = (a: SimEvent, b: SimEvent): boolean => a.at < b.at || (a.at === b.at && a.order < b.order);

/** Lets every promise chain the last event started settle: microtasks all run before the check phase. */
const drainMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Simulated time for one process of Node: a queue of events, each belonging
 * to a node (a simulated process) or to the world (null: the network, the
 * servers, the operator). Time jumps to the next event; nothing runs on real
 * timers, so a run is a function of its seed alone.
 */
export class Scheduler {
  private time: number;
  private order = 0;
  private readonly queue = new EventHeap();
  private cancelledInQueue = 0;
  private deferredCount = 0;
  /** Events run so far. */
  stepsRun = 0;

  /** `eventsMax` is there for tests of the bound; runs keep EVENTS_MAX. */
  constructor(
    startAtMs = 1_700_000_000_000,
    private readonly eventsMax = EVENTS_MAX,
  ) {
    this.time = startAtMs;
  }

  get now(): number {
    return this.time;
  }

  /** A new process incarnation named `name` (a restart passes the name of the one that died). */
  node(name: string): SimNode {
    return new SimNode(name);
  }

  /** Runs `fn` as an event of `node` (null: the world) `delayMs` from now; ties in time run in insertion order. */
  schedule(node: SimNode | null, delayMs: number, fn: () => void): Cancel {
    if (!Number.isFinite(delayMs) || delayMs < 0)
      throw new Error(`schedule: delay must be a finite number >= 0, not ${delayMs}`);
    if (node && stateOf(node).dead) return () => {};
    this.ensureRoom();
    const event: SimEvent = {
      at: this.time + delayMs,
      order: this.order++,
      node,
      fn,
      where: 'queued',
      cancelled: false,
    };
    this.queue.push(event);
    return () => this.cancel(event);
  }

  /** Events still to run (a paused node's deferred ones included, cancelled ones not). */
  pending(): number {
    return this.queue.size - this.cancelledInQueue + this.deferredCount;
  }

  /** SIGSTOP: the node's events that come due wait for resume. */
  pause(node: SimNode): void {
    const state = stateOf(node);
    if (!state.dead) state.paused = true;
  }

  /**
   * SIGCONT: every event that came due meanwhile runs now, once, in its
   * original order (before the node's later events due now too); a repeating timer fires once, not once per missed period
   * (it schedules its next period only when it runs, as Node's do).
   */
  resume(node: SimNode): void {
    const state = stateOf(node);
    if (!state.paused) return;
    state.paused = false;
    for (const event of state.deferred) {
      // Its original insertion order stays: it runs before whatever the node was given later.
      event.at = this.time;
      event.where = 'queued';
      this.queue.push(event);
    }
    this.deferredCount -= state.deferred.length;
    state.deferred = [];
  }

  /** SIGKILL: the node's events are dropped, the queued and deferred ones now and any it is given later. */
  kill(node: SimNode): void {
    const state = stateOf(node);
    if (state.dead) return;
    state.dead = true;
    state.paused = false;
    for (const event of state.deferred) event.where = 'done';
    this.deferredCount -= state.deferred.length;
    state.deferred = [];
    this.sweep((event) => event.node !== node);
  }

  /** The Clock port of a node, on simulated time; its timers are the node's events. */
  clockFor(node: SimNode | null): Clock {
    const at = (ms: number, fn: () => void) => this.schedule(node, timerDelay(ms), fn);
    return {
      now: () => this.time,
      after: at,
      every: (ms, fn) => this.every(node, timerDelay(ms), fn),
      soon: (fn) => void this.schedule(node, 0, fn),
      sleep: (ms) => new Promise<void>((resolve) => void at(ms, resolve)),
    };
  }

  /**
   * Runs the next event: time moves to it, it runs, and every promise chain
   * it started settles before the next one. False when nothing is left. An
   * exception from the event propagates: it is a bug the run found.
   */
  async step(): Promise<boolean> {
    const event = this.nextRunnable(Infinity);
    if (!event) return false;
    this.queue.pop();
    event.where = 'done';
    this.time = Math.max(this.time, event.at);
    this.stepsRun++;
    event.fn();
    await drainMicrotasks();
    return true;
  }

  /** Runs every event due up to `timeMs`, then sets the time to it. */
  async runUntil(timeMs: number): Promise<void> {
    for (let next = this.nextRunnable(timeMs); next && next.at <= timeMs; next = this.nextRunnable(timeMs))
      await this.step();
    this.time = Math.max(this.time, timeMs);
  }

  async runFor(ms: number): Promise<void> {
    await this.runUntil(this.time + ms);
  }

  /**
   * The first event that may run, left in the queue. Cancelled events at the
   * head are dropped; due events of paused nodes (up to `limit`) move to
   * their node's deferred list, time passing them as it would have.
   */
  private nextRunnable(limit: number): SimEvent | undefined {
    for (let event = this.queue.peek(); event; event = this.queue.peek()) {
      if (event.cancelled) {
        this.queue.pop();
        this.cancelledInQueue--;
        continue;
      }
      if (!event.node || !stateOf(event.node).paused || event.at > limit) return event;
      this.queue.pop();
      this.defer(event);
    }
    return undefined;
  }

  private defer(event: SimEvent): void {
    this.time = Math.max(this.time, event.at);
    event.where = 'deferred';
    stateOf(event.node as SimNode).deferred.push(event);
    this.deferredCount++;
  }

  private every(node: SimNode | null, periodMs: number, fn: () => void): Cancel {
    let stopped = false;
    let cancelNext: Cancel = () => {};
    const tick = () => {
      if (stopped) return;
      cancelNext = this.schedule(node, periodMs, tick);
      fn();
    };
    cancelNext = this.schedule(node, periodMs, tick);
    return () => {
      stopped = true;
      cancelNext();
    };
  }

  private cancel(event: SimEvent): void {
    if (event.cancelled || event.where === 'done') return;
    event.cancelled = true;
    if (event.where === 'deferred') {
      const deferred = stateOf(event.node as SimNode).deferred;
      deferred.splice(deferred.indexOf(event), 1);
      this.deferredCount--;
      event.where = 'done';
      return;
    }
    this.cancelledInQueue++;
    if (this.cancelledInQueue >= SWEEP_AT && this.cancelledInQueue * 2 >= this.queue.size) this.sweep(() => true);
  }

  /** Drops cancelled events and those `keep` refuses from the queue. */
  private sweep(keep: (event: SimEvent) => boolean): void {
    for (const event of this.queue.filter((e) => !e.cancelled && keep(e))) event.where = 'done';
    this.cancelledInQueue = 0;
  }

  private ensureRoom(): void {
    if (this.queue.size + this.deferredCount < this.eventsMax) return;
    if (this.cancelledInQueue > 0) this.sweep(() => true);
    if (this.queue.size + this.deferredCount >= this.eventsMax) {
      throw new Error(
        `the simulator's event queue is full (${this.eventsMax} events): a runaway timer or message loop`,
      );
    }
  }
}

/** Node fires a timeout of 0 (or NaN) after 1 ms, and shard/node-clock.ts caps long ones; so do simulated timers. */
function timerDelay(ms: number): number {
  if (Number.isNaN(ms)) return 1;
  return Math.min(Math.max(1, ms), DELAY_MAX_MS);
}
