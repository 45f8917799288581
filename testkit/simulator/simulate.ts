import { FAULT_KINDS, moveAway, startEpisode, type FaultKind } from './faults.js';
import { SERVE_AGAIN_BOUND_MS, simOptions, type SimOptions } from './options.js';
import { World } from './world.js';

export type SimResult = {
  seed: number;
  failures: string[];
  /** The last lines of the run's trace (faults, role changes), for a failing seed. */
  trace: string[];
  stats: {
    simulatedMs: number;
    steps: number;
    answers: number;
    logEvents: number;
    retries: number;
    worstServeAgainMs: number;
    /** Longest time between two decided answers. */
    longestSilenceMs: number;
    /** Takeovers that fenced the log (the start's included), and copies deposed, over the run. */
    takeovers: number;
    depositions: number;
  };
};

/** Steps between two comparisons of every copy with the log. */
const CHECK_EVERY_STEPS = 16;

/**
 * Runs one seed: boots the copies, starts the clients, plays `episodes`
 * fault episodes (requiring service again after each), stops the clients,
 * waits for every copy to reach the log's tail with the log's state, and
 * stops every copy (which must then be inert). Deterministic: the same seed
 * and options give the same run.
 */
export async function simulate(
  seed: number,
  overrides: Partial<SimOptions> & { kinds?: readonly FaultKind[] } = {},
): Promise<SimResult> {
  const { kinds = FAULT_KINDS, ...rest } = overrides;
  const options = simOptions(seed, rest);
  const world = new World(options);
  let worstServeAgainMs = 0;
  const run = new Runner(world);
  try {
    for (const slot of world.slots) world.boot(slot);
    world.startClients();
    worstServeAgainMs = await run.requireService(world.scheduler.now, 'start');
    for (let episode = 1; episode <= options.episodes && world.checker.failures.length === 0; episode++) {
      const endsAt = startEpisode(world, kinds);
      await run.until(endsAt);
      worstServeAgainMs = Math.max(worstServeAgainMs, await run.requireService(endsAt, `episode ${episode}`));
      await run.until(world.scheduler.now + world.faultRandom.int(100, 600));
    }
    world.stopClients();
    await run.until(world.scheduler.now + options.requestTimeoutMs + 500);
    await run.converge();
    await run.stopAll();
  } catch (error) {
    world.checker.fail(`the simulation threw: ${(error as Error).stack}`);
  }
  return {
    seed,
    failures: world.checker.failures,
    trace: world.trace.slice(-60),
    stats: {
      simulatedMs: world.scheduler.now - world.startedAt,
      steps: world.scheduler.stepsRun,
      answers: world.checker.answersChecked,
      logEvents: world.checker.logEvents,
      retries: world.clients.reduce((n, c) => n + c.retries, 0),
      worstServeAgainMs,
      longestSilenceMs: world.longestSilenceMs,
      takeovers: world.transitions.filter((t) => t.from === 'taking-over' && t.to === 'serving').length,
      depositions: world.transitions.filter((t) => t.to === 'deposed').length,
    },
  };
}

/** Drives the scheduler and runs the per-step checks. */
export class Runner {
  private steps = 0;

  constructor(private readonly world: World) {}

  /** Runs events up to `timeMs` (or until a failure). */
  async until(timeMs: number, done: () => boolean = () => false): Promise<boolean> {
    const { scheduler, checker } = this.world;
    while (scheduler.now <= timeMs && checker.failures.length === 0) {
      if (done()) return true;
      if (!(await scheduler.step())) return done();
      this.afterStep();
    }
    return done();
  }

  private afterStep(): void {
    const world = this.world;
    if (++this.steps % CHECK_EVERY_STEPS === 0) world.checkCopies();
    const armed = world.stopWhenTakingOver;
    if (armed) {
      if (world.scheduler.now > armed.until) world.stopWhenTakingOver = null;
      const slot = world.slots.find(
        (s) => s.copy?.roleName === 'taking-over' && !s.removed && !s.node.dead && !s.node.paused,
      );
      if (slot) {
        world.stopWhenTakingOver = null;
        world.note(`fault: placement stops ${slot.name} while it takes over`);
        moveAway(world, slot, 'placement during takeover', armed.awayMs);
      }
    }
  }

  /** Some client must get a decided answer after `since`, at the latest TTL + bound after it; returns how long it took. */
  async requireService(since: number, what: string): Promise<number> {
    const deadline = since + this.world.options.leaseTtlMs + SERVE_AGAIN_BOUND_MS;
    const served = await this.until(deadline, () => this.world.lastAnswerAt > since);
    if (!served && this.world.checker.failures.length === 0) {
      this.world.checker.fail(
        `${what}: the shard did not serve within ${deadline - since} ms (lease TTL + ${SERVE_AGAIN_BOUND_MS} ms) after the faults ended`,
      );
    }
    return this.world.lastAnswerAt - since;
  }

  /** With no load and no faults, every copy reaches the log's tail with the log's state; exactly one serves. */
  async converge(): Promise<void> {
    const world = this.world;
    const caughtUp = () => {
      const last = world.log.lastSeq;
      return (
        world.slots.every((s) => !s.copy || s.copy.statusReport().streamSeq === last) && world.serving().length === 1
      );
    };
    const ok = await this.until(world.scheduler.now + 5_000, caughtUp);
    world.checkCopies();
    if (!ok && world.checker.failures.length === 0) {
      const states = world.slots
        .map((s) => `${s.name}: ${s.copy ? `${s.copy.roleName} at ${s.copy.statusReport().streamSeq}` : 'no copy'}`)
        .join(', ');
      world.checker.fail(`copies did not converge on the log's tail ${world.log.lastSeq} with one primary: ${states}`);
    }
  }

  /** Stops every copy (placement or shutdown) and lets time pass: nothing stopped may act again. */
  async stopAll(): Promise<void> {
    const world = this.world;
    const stopping = world.slots.filter((s) => s.copy && !s.node.dead).map((s) => world.removeCopy(s, 'shutdown'));
    let stopped = false;
    void Promise.all(stopping).then(() => (stopped = true));
    await this.until(world.scheduler.now + 10_000, () => stopped);
    if (!stopped && world.checker.failures.length === 0) world.checker.fail('copies did not stop within 10 s');
    await this.until(world.scheduler.now + 3 * world.options.leaseTtlMs);
  }
}
