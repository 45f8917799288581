import { spawn, type ChildProcess } from 'node:child_process';
import { Waiters } from './waiters.js';

const running = new Set<ManagedProcess>();
process.once('exit', () => {
  for (const p of running) p.killNow();
});

/**
 * A process killed by a signal (a tap timeout, Ctrl-C) runs no 'exit'
 * handlers, so its children would outlive it: kill them and exit with the
 * signal's code. A program with its own graceful stop (`make up`) turns this
 * off with `handleSignals(false)`.
 */
let signalsHandled = true;
export function handleSignals(on: boolean): void {
  signalsHandled = on;
}
for (const [signal, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  process.on(signal, () => {
    if (!signalsHandled) return;
    for (const p of running) p.killNow();
    process.exit(code);
  });
}

/**
 * Children normally share the parent's process group, so a terminal's Ctrl-C
 * reaches them all at once. A launcher that stops its children itself, in an
 * order (`make up`: the gateway before the engines, NATS last), turns this on
 * so that each child gets a process group of its own and hears only the
 * signals the launcher sends it. Read at every launch.
 */
let ownGroups = false;
export function ownProcessGroups(on: boolean): void {
  ownGroups = on;
}

export type Signal = 'SIGKILL' | 'SIGTERM' | 'SIGINT' | 'SIGSTOP' | 'SIGCONT';

/** How one run of a process ended: its pid, and its exit code or the signal that ended it. */
export type ProcessExit = { pid: number | undefined; code: number | null; signal: NodeJS.Signals | null };

/**
 * A child process for `make up`, tests and benchmarks: started (and
 * restarted) with the same command, ready when its own output shows a
 * marker, signalled by pid, and killed when the parent exits, even after a
 * failure.
 */
export abstract class ManagedProcess {
  private child: ChildProcess | null = null;
  private output = '';
  /** Total characters ever written, so waiters can start from a position. */
  private written = 0;
  private readonly waiters = new Waiters();
  private readonly exitListeners = new Set<(exit: ProcessExit) => void>();

  constructor(
    /** For messages: "nats-server n1", "engine". */
    readonly label: string,
    private readonly readyMarker: string,
    private readonly readyTimeoutMs = 20_000,
    private readonly outputKeptChars = 2_000_000,
  ) {}

  /** The executable and its arguments (read at every launch). */
  protected abstract command(): { file: string; args: string[] };

  /** The child's environment (read at every launch). */
  protected environment(): NodeJS.ProcessEnv {
    return process.env;
  }

  /** Called at exit of the parent process, after the kill. */
  protected cleanupAtExit(): void {}

  /** Whether the child gets a process group of its own (read at every launch): `ownProcessGroups` unless a subclass says. */
  protected ownProcessGroup(): boolean {
    return ownGroups;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get isRunning(): boolean {
    return this.child !== null;
  }

  /** Everything the process wrote, across restarts (bounded). */
  get log(): string {
    return this.output;
  }

  /** Starts the process (again, after a kill); resolves when this run prints the ready marker. */
  async launch(): Promise<void> {
    if (this.child) throw new Error(`${this.label} is already running`);
    const { file, args: own } = this.command();
    // CPU_PROF_DIR: every Node child writes a V8 CPU profile there when it exits (bench profiling).
    const profDir = process.env.CPU_PROF_DIR;
    const args =
      profDir && file === process.execPath
        ? [
            '--cpu-prof',
            `--cpu-prof-dir=${profDir}`,
            `--cpu-prof-name=${this.label}-${process.pid}-${Date.now()}.cpuprofile`,
            ...own,
          ]
        : own;
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.environment(),
      detached: this.ownProcessGroup(),
    });
    this.child = child;
    running.add(this);
    // Readiness is read from this run's output only, never an earlier run's.
    let mine = '';
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A process that never got ready must not outlive the failed start.
        child.kill('SIGKILL');
        reject(new Error(`${this.label} not ready in ${this.readyTimeoutMs} ms:\n${mine.slice(-5_000)}`));
      }, this.readyTimeoutMs);
      let started = false;
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        this.output = (this.output + text).slice(-this.outputKeptChars);
        this.written += text.length;
        this.waiters.wake();
        if (started) return; // this run's own output is only kept until it is ready
        mine = (mine + text).slice(-100_000);
        if (mine.includes(this.readyMarker)) {
          started = true;
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited (${code ?? signal}) before ready:\n${mine.slice(-5_000)}`));
      });
    });
    child.once('exit', (code, signal) => {
      if (this.child === child) {
        this.child = null;
        running.delete(this);
      }
      // Listeners see the process as no longer running, so they may launch it again.
      for (const listener of [...this.exitListeners]) listener({ pid: child.pid, code, signal });
    });
    await ready;
  }

  /**
   * Calls `listener` after every exit of this process, whichever run and
   * whatever ended it (a supervisor tells requested stops from crashes
   * itself); returns a function that removes the listener.
   */
  onExit(listener: (exit: ProcessExit) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  /** A position in the output, for `waitForOutput(marker, from)`. */
  get outputPosition(): number {
    return this.written;
  }

  /**
   * Resolves when the output written after position `from` (default: now)
   * contains `marker`; rejects after `timeoutMs`.
   */
  waitForOutput(marker: string, from = this.written, timeoutMs = 20_000): Promise<void> {
    return this.waitForLine((line) => line.includes(marker), from, timeoutMs, `"${marker}"`).then(() => undefined);
  }

  /** Resolves with the first whole output line after position `from` that `matches`; rejects after `timeoutMs`. */
  waitForLine(
    matches: (line: string) => boolean,
    from = this.written,
    timeoutMs = 20_000,
    what = 'the line',
  ): Promise<string> {
    const find = () => {
      const since = this.output.slice(Math.max(0, this.output.length - (this.written - from)));
      return since
        .split('\n')
        .find((line, i, lines) => (i < lines.length - 1 || since.endsWith('\n')) && matches(line));
    };
    return this.waiters.until(find, timeoutMs, () => `${this.label}: no ${what} within ${timeoutMs} ms`);
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits for the exit and returns its code or signal. */
  async signal(signal: Signal): Promise<number | string | null> {
    const child = this.child;
    if (!child) throw new Error(`${this.label} is not running`);
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      child.kill(signal);
      return null;
    }
    const exited = new Promise<number | string | null>((resolve) =>
      child.once('exit', (code, sig) => resolve(code ?? sig)),
    );
    child.kill(signal);
    return exited;
  }

  kill(): Promise<number | string | null> {
    return this.signal('SIGKILL');
  }

  pause(): Promise<number | string | null> {
    return this.signal('SIGSTOP');
  }

  resume(): Promise<number | string | null> {
    return this.signal('SIGCONT');
  }

  async restart(): Promise<void> {
    if (this.child) await this.kill();
    await this.launch();
  }

  /** Stops the process (waking it first if paused). */
  protected async terminate(): Promise<void> {
    if (this.child) {
      const child = this.child;
      child.kill('SIGCONT');
      if (process.env.CPU_PROF_DIR) {
        // A profile is written only at a clean exit: ask first, kill after 10 s.
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await this.signal('SIGTERM');
        clearTimeout(timer);
      } else {
        await this.kill();
      }
    }
  }

  /** Synchronous last resort at parent exit. */
  killNow(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // Already gone.
    }
    this.cleanupAtExit();
  }
}
