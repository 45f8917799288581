import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const READY_TIMEOUT_MS = 20_000;
const running = new Set<EngineProcess>();
process.once('exit', () => {
  for (const engine of running) engine.killNow();
});

export type EngineProcessOptions = {
  natsUrl: string;
  /** Static shard list (e.g. '0-3'); empty to let --shard-count placement decide. */
  shards: string;
  /** Kept across restarts; a temporary one is made (and removed on close) when absent. */
  dataDir?: string;
  /** Extra flags, e.g. ['--snapshot-every-events', '100']. */
  args?: string[];
};

/**
 * A real engine process (`dist/engine/main.js`) for integration tests: started,
 * SIGKILLed, SIGSTOPped and restarted by pid, its JSON log kept for assertions.
 */
export class EngineProcess {
  readonly dataDir: string;
  private child: ChildProcess | null = null;
  private readonly ownsDataDir: boolean;
  private output = '';

  private constructor(private readonly options: EngineProcessOptions) {
    this.ownsDataDir = !options.dataDir;
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'engine-'));
  }

  static async start(options: EngineProcessOptions): Promise<EngineProcess> {
    const engine = new EngineProcess(options);
    await engine.launch();
    return engine;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Everything the process wrote, across restarts (bounded). */
  get log(): string {
    return this.output;
  }

  /** Log lines (pino JSON) with the given message. */
  logLines(msg: string): Record<string, unknown>[] {
    return this.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg);
  }

  async launch(): Promise<void> {
    if (this.child) throw new Error('engine already running');
    const script = new URL('../engine/main.js', import.meta.url).pathname;
    const shardFlags = this.options.shards ? ['--shards', this.options.shards] : [];
    const child = spawn(process.execPath, [script, '--nats', this.options.natsUrl, ...shardFlags, '--data-dir', this.dataDir, ...(this.options.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    running.add(this);
    let mine = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`engine not ready in ${READY_TIMEOUT_MS} ms:\n${mine}`)), READY_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        mine += chunk.toString();
        this.output = (this.output + chunk.toString()).slice(-2_000_000);
        if (mine.includes('"msg":"engine ready"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`engine exited (${code ?? signal}) before ready:\n${mine}`));
      });
    });
    child.once('exit', () => {
      if (this.child === child) {
        this.child = null;
        running.delete(this);
      }
    });
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits for the exit and returns its code or signal. */
  async signal(signal: 'SIGKILL' | 'SIGTERM' | 'SIGSTOP' | 'SIGCONT'): Promise<number | string | null> {
    const child = this.child;
    if (!child) throw new Error('engine not running');
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      child.kill(signal);
      return null;
    }
    const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
    child.kill(signal);
    return exited;
  }

  kill(): Promise<number | string | null> {
    return this.signal('SIGKILL');
  }

  async close(): Promise<void> {
    if (this.child) {
      this.child.kill('SIGCONT');
      await this.signal('SIGKILL');
    }
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  killNow(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
