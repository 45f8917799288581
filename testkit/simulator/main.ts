#!/usr/bin/env node
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { FAULT_KINDS, type FaultKind } from './faults.js';
import { simulate, type SimResult } from './simulate.js';

/**
 * `make simulate [SEEDS=n] [FROM=s] [SEED=s] [FAULTS=kind,...] [JOBS=n]`:
 * runs seeds of the deterministic simulator on worker threads (one per core
 * by default; each seed is deterministic wherever it runs) and prints
 * seeds/s; a failing seed prints its failures, the end of its trace and the
 * one command that replays it.
 */
type Job = { seeds: number[]; kinds: FaultKind[] };

if (!isMainThread) {
  const { seeds, kinds } = workerData as Job;
  for (const seed of seeds) parentPort!.postMessage(await simulate(seed, { kinds }));
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '1000' },
      from: { type: 'string', default: '1' },
      seed: { type: 'string' },
      jobs: { type: 'string', default: String(availableParallelism()) },
      'keep-going': { type: 'boolean', default: false },
      faults: { type: 'string', default: FAULT_KINDS.join(',') },
    },
  });
  const kinds = values.faults.split(',') as FaultKind[];
  const first = values.seed ? Number(values.seed) : Number(values.from);
  const count = values.seed ? 1 : Number(values.seeds);
  const jobs = Math.min(count, Number(values.jobs));
  if (
    !Number.isSafeInteger(first) ||
    !Number.isSafeInteger(count) ||
    count < 1 ||
    !(jobs >= 1) ||
    kinds.some((k) => !FAULT_KINDS.includes(k))
  ) {
    process.stderr.write(
      `usage: simulate [--seeds N] [--from S] [--seed S] [--jobs N] [--keep-going] [--faults ${FAULT_KINDS.join(',')}]\n`,
    );
    process.exit(2);
  }
  const faults = values.faults === FAULT_KINDS.join(',') ? '' : ` FAULTS=${values.faults}`;
  const started = performance.now();
  let done = 0;
  let failed = 0;
  let steps = 0;
  let simulatedMs = 0;
  const progress = (last = false) => {
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(
      `${done} seeds in ${seconds.toFixed(1)} s on ${jobs} threads: ${(done / seconds).toFixed(1)} seeds/s, ${Math.round(steps / seconds)} steps/s, ${(simulatedMs / 1000 / seconds).toFixed(0)}x real time, ${failed} failed${last ? '' : ' ...'}\n`,
    );
  };
  const workers = Array.from({ length: jobs }, (_, j) => {
    const seeds: number[] = [];
    for (let seed = first + j; seed < first + count; seed += jobs) seeds.push(seed);
    return new Worker(new URL(import.meta.url), { workerData: { seeds, kinds } satisfies Job });
  });
  await new Promise<void>((resolve, reject) => {
    let running = workers.length;
    for (const worker of workers) {
      worker.on('message', (result: SimResult) => {
        done++;
        steps += result.stats.steps;
        simulatedMs += result.stats.simulatedMs;
        if (result.failures.length > 0) {
          failed++;
          report(result, faults);
          if (!values['keep-going']) for (const w of workers) void w.terminate();
        }
        if (done % 500 === 0) progress();
      });
      worker.on('error', reject);
      worker.on('exit', () => {
        if (--running === 0) resolve();
      });
    }
  });
  progress(true);
  process.exit(failed > 0 ? 1 : 0);
}

function report(result: SimResult, faults: string): void {
  process.stdout.write(
    `\nseed ${result.seed} FAILED\n${result.failures.map((f) => `  ${f}`).join('\n')}\n  trace (last lines):\n${result.trace.map((l) => `    ${l}`).join('\n')}\n`,
  );
  process.stdout.write(
    `  replay: make simulate SEED=${result.seed}${faults}   (engine logs: SIM_LOG=debug make simulate SEED=${result.seed}${faults})\n\n`,
  );
}
