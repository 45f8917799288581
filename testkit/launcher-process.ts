import { readdirSync, readFileSync } from 'node:fs';
import { ManagedProcess } from './managed-process.js';

export type LauncherProcessOptions = {
  /** DATA_DIR of the run (a temporary directory in tests). */
  dataDir: string;
  /** The gateway's PORT. */
  port: number;
  /** Extra environment, e.g. NATS_PORT, SHARD_COUNT, RESTART_BACKOFF_MS. */
  env?: Record<string, string>;
  /** How long the whole system may take to come up; the machines are shared and slow. */
  readyTimeoutMs?: number;
};

/** The banner's names of `make up`'s processes, as in "  gateway   http://... (pid 123; ...". */
const BANNER_NAMES = ['nats', 'engine', 'replica', 'audit', 'gateway'] as const;
export type LauncherChild = (typeof BANNER_NAMES)[number];

/** Direct children of `pid`, from /proc (Linux): those the launcher started but has not yet named. */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The fields after the command (which may contain spaces) start after its ')': state, ppid, ...
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return found;
}

/**
 * The real `make up` launcher (`dist/ctl/up.js`) as a child process, for
 * tests: ready when it prints its banner. Its children run in process groups
 * of their own, so killing the launcher does not kill them: every pid it
 * starts (named in its output, or found among its children) is killed by pid
 * when the test ends, even after a failure.
 */
export class LauncherProcess extends ManagedProcess {
  /** Pids seen among the launcher's children and not yet seen gone. */
  private readonly seenChildren = new Set<number>();

  private constructor(private readonly options: LauncherProcessOptions) {
    super('make up', 'Press Ctrl-C to stop.', options.readyTimeoutMs ?? 120_000);
  }

  static async start(options: LauncherProcessOptions): Promise<LauncherProcess> {
    const launcher = new LauncherProcess(options);
    await launcher.launch();
    return launcher;
  }

  protected command() {
    return { file: process.execPath, args: [new URL('../ctl/up.js', import.meta.url).pathname] };
  }

  protected override environment(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: this.options.dataDir, PORT: String(this.options.port), HOST: '127.0.0.1', ...(this.options.env ?? {}) };
    // The launcher must start its own NATS, with its own users, whatever the test's environment says.
    for (const name of ['NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_CREDENTIALS']) if (!this.options.env?.[name]) delete env[name];
    return env;
  }

  get url(): string {
    return `http://127.0.0.1:${this.options.port}`;
  }

  /** The pids the banner names, by process. */
  bannerPids(): Record<LauncherChild, number> {
    const pids = {} as Record<LauncherChild, number>;
    for (const name of BANNER_NAMES) {
      const match = new RegExp(`^  ${name}\\s.*?\\(pid (\\d+)`, 'm').exec(this.log);
      if (!match) throw new Error(`the banner names no ${name} pid:\n${this.log.slice(-3_000)}`);
      pids[name] = Number(match[1]);
    }
    return pids;
  }

  /** Every pid the launcher's output has named: the banner's and each restart's. */
  namedPids(): number[] {
    return [...new Set([...this.log.matchAll(/\(pid (\d+)/g)].map((m) => Number(m[1])))];
  }

  /** Pids this launcher started that still exist. */
  livePids(): number[] {
    const candidates = new Set([...this.namedPids(), ...this.seenChildren]);
    if (this.pid !== undefined && this.isRunning) for (const pid of childrenOf(this.pid)) candidates.add(pid);
    return [...candidates].filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        // ESRCH: gone. Never killed later, so a reused pid is safe.
        this.seenChildren.delete(pid);
        return false;
      }
    });
  }

  private killLeftovers(): void {
    for (const pid of this.livePids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Exited in the meantime.
      }
    }
  }

  /** At the parent's exit: the launcher's children are found while it still lives, then all are killed. */
  override killNow(): void {
    if (this.pid !== undefined && this.isRunning) for (const pid of childrenOf(this.pid)) this.seenChildren.add(pid);
    super.killNow();
    this.killLeftovers();
  }

  /** Stops the launcher as an operator would (SIGTERM), then kills whatever it left behind. */
  async close(): Promise<void> {
    if (this.isRunning) {
      if (this.pid !== undefined) for (const pid of childrenOf(this.pid)) this.seenChildren.add(pid);
      const timer = setTimeout(() => this.isRunning && void this.kill().catch(() => undefined), 60_000);
      await this.signal('SIGTERM').catch(() => undefined);
      clearTimeout(timer);
    }
    this.killLeftovers();
  }
}
