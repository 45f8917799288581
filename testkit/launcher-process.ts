import { readdirSync, readFileSync } from 'node:fs';
import { ManagedProcess, type ProcessExit } from '../launch/index.js';

export type LauncherProcessOptions = {
  /** DATA_DIR of the run (a temporary directory in tests). */
  dataDir: string;
  /** The gateway's PORT. */
  port: number;
  /** Extra environment, e.g. NATS_PORT, SHARD_COUNT, RESTART_BACKOFF_MS. */
  env?: Record<string, string>;
  /** How long the whole system may take to come up; the machines are shared and slow. */
  readyTimeoutMs?: number;
  /**
   * How it is started. `node` (the default): `node dist/ctl/up.js`, in the
   * test's process group. `make`: `make up` as a user types it in a terminal,
   * in a process group of its own like a terminal's foreground job (see
   * `interrupt()`); its `build` and `nats` prerequisites are skipped, since
   * the tests run from the build already made and a build would rewrite
   * dist/ beneath the tests running alongside. `make-ignoring-sigint`: the
   * same with make ignoring SIGINT, as it does when started as a script's
   * background job (`setsid make up &`); make's exit status is then its
   * recipe's (in a terminal, make itself dies of the SIGINT once its recipe
   * has exited, whatever the recipe's status).
   */
  via?: 'node' | 'make' | 'make-ignoring-sigint';
};

const ROOT = new URL('../../', import.meta.url).pathname;
/** `make up` without its prerequisites, from the repository's root, saying nothing about directories. */
const MAKE_UP = ['--no-print-directory', '-C', ROOT, '-o', 'build', '-o', 'nats', 'up'];

/** The banner's names of `make up`'s processes, as in "  gateway   http://... (pid 123; ...". */
const BANNER_NAMES = ['nats', 'engine', 'replica', 'audit', 'gateway'] as const;
export type LauncherChild = (typeof BANNER_NAMES)[number];

/**
 * Every descendant of `pid` (its children, theirs...), from /proc (Linux):
 * what the launcher started but has not yet named; under make, the launcher
 * is make's child and the system's processes are its grandchildren.
 */
function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The fields after the command (which may contain spaces) start after its ')': state, ppid, ...
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const siblings = children.get(ppid);
      if (siblings) siblings.push(Number(entry));
      else children.set(ppid, [Number(entry)]);
    } catch {
      // The process exited while we looked.
    }
  }
  const found: number[] = [];
  const parents = [pid];
  for (let parent = parents.pop(); parent !== undefined; parent = parents.pop()) {
    for (const child of children.get(parent) ?? []) {
      found.push(child);
      parents.push(child);
    }
  }
  return found;
}

/**
 * The real `make up` launcher (`dist/ctl/up.js`, or make running it) as a
 * child process, for tests: ready when it prints its banner. Its children run
 * in process groups of their own, so killing the launcher does not kill them:
 * every pid it starts (named in its output, or found among its descendants)
 * is killed by pid when the test ends, even after a failure.
 */
export class LauncherProcess extends ManagedProcess {
  /** Pids seen among the launcher's descendants and not yet seen gone. */
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
    switch (this.options.via ?? 'node') {
      case 'node':
        return { file: process.execPath, args: [new URL('../ctl/up.js', import.meta.url).pathname] };
      case 'make':
        return { file: 'make', args: MAKE_UP };
      case 'make-ignoring-sigint':
        // An ignored signal stays ignored across exec; make then leaves SIGINT alone (its recipe's node catches it).
        return { file: 'bash', args: ['-c', 'trap "" INT; exec make "$@"', 'make-up', ...MAKE_UP] };
    }
  }

  protected override environment(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATA_DIR: this.options.dataDir,
      PORT: String(this.options.port),
      HOST: '127.0.0.1',
      ...(this.options.env ?? {}),
    };
    // The launcher must start its own NATS, with its own users, whatever the test's environment says.
    for (const name of ['NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_CREDENTIALS'])
      if (!this.options.env?.[name]) delete env[name];
    // Under `make test`, make's own variables would make this a sub-make of it (make[1], its jobserver): a user's make has none.
    for (const name of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[name];
    return env;
  }

  protected override ownProcessGroup(): boolean {
    return (this.options.via ?? 'node') !== 'node';
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
    if (this.pid !== undefined && this.isRunning) for (const pid of descendantsOf(this.pid)) candidates.add(pid);
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

  /** Notes the launcher's descendants while it still lives, so they are found after it has gone. */
  private noteDescendants(): void {
    if (this.pid !== undefined && this.isRunning) for (const pid of descendantsOf(this.pid)) this.seenChildren.add(pid);
  }

  /**
   * Ctrl-C as a terminal sends it: SIGINT to the launcher's whole process
   * group (make, and `node dist/ctl/up.js` under it). Resolves with the
   * launcher's exit. Only for a launcher started `via` make, which has a
   * process group of its own.
   */
  interrupt(): Promise<ProcessExit> {
    const pid = this.pid;
    if (pid === undefined || !this.isRunning || !this.ownProcessGroup())
      throw new Error('interrupt() needs a running launcher started via make, in its own process group');
    this.noteDescendants();
    const exited = new Promise<ProcessExit>((resolve) => {
      const forget = this.onExit((exit) => {
        forget();
        resolve(exit);
      });
    });
    // The group's id is its leader's pid: the launcher's.
    process.kill(-pid, 'SIGINT');
    return exited;
  }

  /** At the parent's exit: the launcher's descendants are found while it still lives, then all are killed. */
  override killNow(): void {
    this.noteDescendants();
    super.killNow();
    this.killLeftovers();
  }

  /** Stops the launcher as an operator would (SIGTERM), then kills whatever it left behind. */
  async close(): Promise<void> {
    if (this.isRunning) {
      this.noteDescendants();
      const timer = setTimeout(() => this.isRunning && void this.kill().catch(() => undefined), 60_000);
      await this.signal('SIGTERM').catch(() => undefined);
      clearTimeout(timer);
    }
    this.killLeftovers();
  }
}
