import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';

function commandOutput(command: string): string {
  try {
    return execSync(command, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function worktreeDirty(): boolean | null {
  const status = commandOutput('git status --porcelain --untracked-files=no -- . :!docs :!bench/results');
  return status === 'unknown' ? null : status !== '';
}

/**
 * Writes a benchmark's result file with what it ran on: the commit, Node and
 * nats-server versions, CPU and memory. Every bench keeps its figures here.
 */
export function saveResult(file: string, bench: string, figures: Record<string, unknown>): void {
  mkdirSync(dirname(file), { recursive: true });
  const record = {
    bench,
    at: new Date().toISOString(),
    commit: commandOutput('git rev-parse --short HEAD'),
    /** Whether the working tree had changes the commit does not hold (figures of code not committed as such). */
    dirty: worktreeDirty(),
    node: process.version,
    natsServer: commandOutput(`${process.env.NATS_SERVER_BIN ?? 'nats-server'} --version`),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
    },
    ...figures,
  };
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
}
