import type { ManagedProcess, ProcessExit } from '../launch/index.js';

/**
 * Keeps a set of child processes alive for `make up`: a child that exits
 * without being asked to is reported and launched again with the same
 * command, after a delay that doubles with every quick failure, so a child
 * that cannot start (its port taken, NATS down) is retried calmly instead of
 * in a tight loop. `stop()` stops the children in their stop groups' order
 * and cancels any pending restart; it never throws, whatever state a child is
 * in. A child that exits by itself while the children are being stopped (a
 * signal meant for them all reached it too) is stopped already: it is
 * reported, never restarted, and not signalled.
 */

export type SupervisorOptions = {
  /** The delay before the first restart; it doubles with each further failure. */
  firstDelayMs?: number;
  /** The longest delay between two attempts. */
  maxDelayMs?: number;
  /** A child that stayed up this long before it exited starts again from the first delay. */
  stableAfterMs?: number;
  /** A child that has not exited this long after its stop signal is killed. */
  stopTimeoutMs?: number;
  /** Where reports go (one line each); by default `info` to stdout, `error` to stderr. */
  report?: (line: string, level: 'info' | 'error') => void;
};

/** The delay before restart attempt `failures + 1`: `firstMs` doubled per failure, at most `maxMs`. */
export function restartDelayMs(failures: number, firstMs: number, maxMs: number): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(failures, 30));
}

type Child = {
  readonly process: ManagedProcess;
  readonly stopGroup: number;
  readonly stopSignal: 'SIGTERM' | 'SIGINT';
  /** `up`: ready; `starting`: launched, not yet ready; `waiting`: a restart is pending; `stopped`: by `stop()`. */
  state: 'up' | 'starting' | 'waiting' | 'stopped';
  /** Failures since the child last stayed up for `stableAfterMs`; bounded, as it only sets an exponent. */
  failures: number;
  upSince: number | null;
  timer: NodeJS.Timeout | null;
  /** Its last exit after `stop()` began, whoever caused it: a child already gone when its group's turn comes is reported with it. */
  exitWhileStopping: ProcessExit | null;
};

const seconds = (ms: number) => `${ms / 1000} s`;
const how = (exit: ProcessExit) => (exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`);

export class Supervisor {
  private readonly children: Child[] = [];
  private stopped: Promise<void> | null = null;
  private readonly firstDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly stableAfterMs: number;
  private readonly stopTimeoutMs: number;
  private readonly report: (line: string, level: 'info' | 'error') => void;

  constructor(options: SupervisorOptions = {}) {
    this.firstDelayMs = options.firstDelayMs ?? 500;
    // A first delay longer than the cap would make the cap meaningless: the cap grows to it.
    this.maxDelayMs = Math.max(options.maxDelayMs ?? 30_000, this.firstDelayMs);
    this.stableAfterMs = options.stableAfterMs ?? 60_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 20_000;
    this.report =
      options.report ?? ((line, level) => (level === 'error' ? process.stderr : process.stdout).write(`${line}\n`));
  }

  get isStopping(): boolean {
    return this.stopped !== null;
  }

  /**
   * Supervises a started process from now on. Children are stopped by
   * ascending `stopGroup`, those of one group together, each with
   * `stopSignal` (nats-server shuts down cleanly, exit code 0, on SIGINT; on
   * SIGTERM it exits 1). A process that has already died by the time it is
   * added is restarted like any other.
   */
  add(managed: ManagedProcess, stopGroup: number, stopSignal: 'SIGTERM' | 'SIGINT' = 'SIGTERM'): void {
    const child: Child = {
      process: managed,
      stopGroup,
      stopSignal,
      state: 'up',
      failures: 0,
      upSince: Date.now(),
      timer: null,
      exitWhileStopping: null,
    };
    this.children.push(child);
    managed.onExit((exit) => this.exited(child, exit));
    if (this.stopped) {
      // Added while stopping (a start that finished after Ctrl-C): it must not outlive the stop.
      child.state = 'stopped';
      void this.stopOne(child);
    } else if (!managed.isRunning) {
      // Its exit happened before there was a listener to hear it.
      child.upSince = null;
      this.report(`${managed.label} exited during start-up`, 'error');
      this.restartLater(child);
    }
  }

  /** Stops every child, group by group; resolves once all have exited. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= this.stopAll();
    return this.stopped;
  }

  /** The last resort (a second Ctrl-C): SIGKILL every child by pid, now. */
  killAll(): void {
    for (const child of this.children) {
      this.cancelRestart(child);
      const pid = child.process.pid;
      if (pid === undefined || !child.process.isRunning) continue;
      try {
        process.kill(pid, 'SIGKILL');
        this.report(`${child.process.label} (pid ${pid}) killed`, 'error');
      } catch {
        // It exited in the meantime.
      }
    }
  }

  private exited(child: Child, exit: ProcessExit): void {
    if (this.stopped || child.state === 'stopped') {
      // Not a crash: the stop is under way, and stopOne reports the exit when the child's group comes.
      child.exitWhileStopping = exit;
      return;
    }
    const ranMs = child.upSince === null ? 0 : Date.now() - child.upSince;
    const wasUp = child.state === 'up';
    child.upSince = null;
    const tail = child.process.log
      .trimEnd()
      .split('\n')
      .slice(-3)
      .map((line) => `    ${line.slice(0, 300)}`)
      .join('\n');
    this.report(
      `${child.process.label} (pid ${exit.pid ?? '?'}) ${wasUp ? 'exited unexpectedly' : 'exited before it was ready'} (${how(exit)})${exit.code !== null && tail ? `; its last output:\n${tail}` : ''}`,
      'error',
    );
    // A child that ran for a good while had a one-off failure: it starts again quickly.
    if (ranMs >= this.stableAfterMs) child.failures = 0;
    this.restartLater(child);
  }

  /** Schedules one restart (never two at once: the timer is the child's only pending one). */
  private restartLater(child: Child): void {
    if (this.stopped || child.timer) return;
    const delay = restartDelayMs(child.failures, this.firstDelayMs, this.maxDelayMs);
    child.failures = Math.min(child.failures + 1, 30);
    child.state = 'waiting';
    this.report(`${child.process.label}: restarting in ${seconds(delay)}`, 'error');
    child.timer = setTimeout(() => {
      child.timer = null;
      void this.relaunch(child);
    }, delay);
  }

  private async relaunch(child: Child): Promise<void> {
    if (this.stopped) return;
    child.state = 'starting';
    const starting = child.process.launch();
    // launch() spawns before its first await, so the new pid is known now: said at once, so
    // that whoever watches this output knows every pid that may need cleaning up.
    if (child.process.pid !== undefined)
      this.report(`${child.process.label} starting again (pid ${child.process.pid})`, 'info');
    try {
      await starting;
    } catch (error) {
      if (this.stopped) return;
      if (child.state === 'starting') {
        this.report(`${child.process.label}: ${String((error as Error).message ?? error).split('\n')[0]}`, 'error');
        // A launch that spawned nothing has no exit to wait for; one that timed out has been killed and its exit will come.
        if (!child.process.isRunning) this.restartLater(child);
      }
      return;
    }
    if (this.stopped) return;
    child.state = 'up';
    child.upSince = Date.now();
    this.report(`${child.process.label} restarted (pid ${child.process.pid})`, 'info');
  }

  private cancelRestart(child: Child): void {
    if (!child.timer) return;
    clearTimeout(child.timer);
    child.timer = null;
    this.report(`${child.process.label}: pending restart cancelled`, 'info');
  }

  private async stopAll(): Promise<void> {
    for (const child of this.children) {
      this.cancelRestart(child);
      child.state = 'stopped';
    }
    const groups = [...new Set(this.children.map((c) => c.stopGroup))].sort((a, b) => a - b);
    for (const group of groups) {
      await Promise.all(this.children.filter((c) => c.stopGroup === group).map((c) => this.stopOne(c)));
    }
  }

  /**
   * Its stop signal, then SIGKILL after `stopTimeoutMs`. A child that is not
   * running has nothing left to stop: if it exited since the stop began, that
   * exit is reported as its stop.
   */
  private async stopOne(child: Child): Promise<void> {
    const { process: managed } = child;
    const pid = managed.pid;
    if (!managed.isRunning || pid === undefined) {
      this.reportExitedWhileStopping(child);
      return;
    }
    const timer = setTimeout(() => {
      this.report(
        `${managed.label} (pid ${pid}) did not stop within ${seconds(this.stopTimeoutMs)}: killing it`,
        'error',
      );
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // It exited just now.
      }
    }, this.stopTimeoutMs);
    try {
      const result = await managed.signal(child.stopSignal);
      this.report(
        `${managed.label} stopped (pid ${pid}${result === 0 ? '' : `, ${typeof result === 'string' ? `signal ${result}` : `code ${result}`}`})`,
        'info',
      );
    } catch {
      // It exited between the check and the signal: there is nothing left to stop.
      this.reportExitedWhileStopping(child);
    } finally {
      clearTimeout(timer);
    }
  }

  private reportExitedWhileStopping(child: Child): void {
    const exit = child.exitWhileStopping;
    if (exit) this.report(`${child.process.label} (pid ${exit.pid ?? '?'}) had already exited (${how(exit)})`, 'info');
  }
}
