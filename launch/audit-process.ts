import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess } from './managed-process.js';

const script = () => new URL('../audit/main.js', import.meta.url).pathname;

export type AuditProcessOptions = {
  natsUrl: string;
  shards: string;
  dataDir?: string;
  args?: string[];
  /** Extra environment, e.g. NATS credentials (NatsServer.credentials('audit')). */
  env?: Record<string, string>;
};

/** A real audit process (`dist/audit/main.js`) for tests and `make up`. */
export class AuditProcess extends ManagedProcess {
  readonly dataDir: string;
  private readonly ownsDataDir: boolean;

  private constructor(private readonly options: AuditProcessOptions) {
    super('audit', '"msg":"audit ready"');
    this.ownsDataDir = !options.dataDir;
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'audit-'));
  }

  static async start(options: AuditProcessOptions): Promise<AuditProcess> {
    const audit = new AuditProcess(options);
    await audit.launch();
    return audit;
  }

  protected command() {
    return {
      file: process.execPath,
      args: [
        script(),
        '--nats',
        this.options.natsUrl,
        '--shards',
        this.options.shards,
        '--data-dir',
        this.dataDir,
        ...(this.options.args ?? []),
      ],
    };
  }

  protected override environment(): NodeJS.ProcessEnv {
    return { ...process.env, ...(this.options.env ?? {}) };
  }

  /** Runs `audit verify` on this process's files: its exit code and output (`--json`: one line per shard). */
  verify(json = false): Promise<{ code: number; output: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [
          script(),
          'verify',
          '--nats',
          this.options.natsUrl,
          '--shards',
          this.options.shards,
          '--data-dir',
          this.dataDir,
          ...(json ? ['--json'] : []),
        ],
        (error, stdout, stderr) => {
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
        },
      );
    });
  }

  async close(): Promise<void> {
    await this.terminate();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
