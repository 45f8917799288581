import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess } from './managed-process.js';
import type { CopyRole, RoleTransition } from '../protocol/cluster.js';

export type EngineProcessOptions = {
  natsUrl: string;
  /** Static shard list (e.g. '0-3'); empty to let --shard-count placement decide. */
  shards: string;
  /** Kept across restarts; a temporary one is made (and removed on close) when absent. */
  dataDir?: string;
  /** Extra flags, e.g. ['--snapshot-every-events', '100']. */
  args?: string[];
  /** `replica` runs dist/replica/main.js (a standby). Default `primary`. */
  role?: 'primary' | 'replica';
  /** Extra environment, e.g. NATS credentials (NatsServer.credentials('engine')). */
  env?: Record<string, string>;
  /** How long a start may take to say it is ready (default 20 s; a restart rebuilds its shards from snapshots first). */
  readyTimeoutMs?: number;
};

/**
 * A real engine process (`dist/engine/main.js`) for integration tests and
 * `make up`: started, SIGKILLed, SIGSTOPped and restarted by pid, its JSON log
 * kept for assertions.
 */
export class EngineProcess extends ManagedProcess {
  readonly dataDir: string;
  private readonly ownsDataDir: boolean;

  private constructor(private readonly options: EngineProcessOptions) {
    super(options.role === 'replica' ? 'replica' : 'engine', '"msg":"engine ready"', options.readyTimeoutMs);
    this.ownsDataDir = !options.dataDir;
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'engine-'));
  }

  static async start(options: EngineProcessOptions): Promise<EngineProcess> {
    const engine = new EngineProcess(options);
    await engine.launch();
    return engine;
  }

  protected command() {
    const script = new URL(
      this.options.role === 'replica' ? '../replica/main.js' : '../engine/main.js',
      import.meta.url,
    ).pathname;
    const shardFlags = this.options.shards ? ['--shards', this.options.shards] : [];
    return {
      file: process.execPath,
      args: [
        script,
        '--nats',
        this.options.natsUrl,
        ...shardFlags,
        '--data-dir',
        this.dataDir,
        ...(this.options.args ?? []),
      ],
    };
  }

  protected override environment(): NodeJS.ProcessEnv {
    return { ...process.env, ...(this.options.env ?? {}) };
  }

  /**
   * Resolves with the report of shard `shard`'s copy entering role `to`
   * (the `role` transition record each copy logs once the new role runs),
   * written after position `from`.
   */
  async waitForRole(
    shard: number,
    to: CopyRole,
    from = this.outputPosition,
    timeoutMs = 20_000,
  ): Promise<RoleTransition> {
    const line = await this.waitForLine(
      (l) => {
        if (!l.startsWith('{')) return false;
        const record = JSON.parse(l) as Partial<RoleTransition> & { msg?: string };
        return record.msg === 'role' && record.shard === shard && record.to === to;
      },
      from,
      timeoutMs,
      `transition of shard ${shard} to ${to}`,
    );
    return JSON.parse(line) as RoleTransition;
  }

  /** Log lines (pino JSON) with the given message. */
  logLines(msg: string): Record<string, unknown>[] {
    return this.log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);
  }

  async close(): Promise<void> {
    await this.terminate();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
