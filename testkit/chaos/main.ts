#!/usr/bin/env node
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jsonLine, passed, replayCommand, textReport } from './report.js';
import { runChaos } from './run.js';
import { TARGET_KINDS, type TargetKind } from './system.js';

/**
 * `make chaos [SEED=n] [DURATION_S=s]`: one chaos run (run.ts) of the real
 * system under faults drawn from the seed, then every checker; prints the
 * faults as they happen, a short report and a final JSON line, and exits 0
 * only when every checker passed (1 otherwise, 2 for bad arguments).
 */
const USAGE = `usage: chaos [--seed N] [--duration-s S] [--clients N] [--targets ${TARGET_KINDS.join(',')}]`;

const DEFAULT_DURATION_S = 300;
const SHARDS = 4;

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seed: { type: 'string', default: process.env.SEED || String(Math.floor(Math.random() * 1_000_000)) },
        'duration-s': { type: 'string', default: process.env.DURATION_S || String(DEFAULT_DURATION_S) },
        clients: { type: 'string', default: '24' },
        targets: { type: 'string', default: process.env.TARGETS || TARGET_KINDS.join(',') },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const seed = Number(values.seed);
  const durationS = Number(values['duration-s']);
  const clients = Number(values.clients);
  const targetKinds = values.targets.split(',') as TargetKind[];
  if (
    !Number.isSafeInteger(seed) ||
    !(durationS >= 20 && durationS <= 3_600) ||
    !(clients >= 2 && clients <= 200) ||
    targetKinds.length === 0 ||
    targetKinds.some((k) => !TARGET_KINDS.includes(k))
  ) {
    process.stderr.write(
      `${USAGE}\n  the seed is an integer, the duration 20..3600 s, the clients 2..200, the targets kinds of process\n`,
    );
    process.exit(2);
  }
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const logDir = mkdtempSync(join(tmpdir(), `chaos-${seed}-`));
  const replay = replayCommand({ seed, durationMs: durationS * 1000, targetKinds });
  log(`chaos: ${replay}; process logs go to ${logDir}`);
  let report;
  try {
    report = await runChaos({ seed, durationMs: durationS * 1000, clients, shards: SHARDS, targetKinds, logDir, log });
  } catch (error) {
    log(`chaos seed ${seed}: the run itself failed: ${(error as Error).stack ?? String(error)}`);
    log(`FAILED: replay with ${replay}`);
    process.exit(1);
  }
  log('');
  log(textReport(report));
  log(jsonLine(report));
  process.exit(passed(report) ? 0 : 1);
}

await main();
