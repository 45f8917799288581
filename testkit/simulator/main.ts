#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { FAULT_KINDS, type FaultKind } from './faults.js';
import { simulate, type SimResult } from './simulate.js';

/**
 * `make simulate [SEEDS=n] [SEED=s]`: runs seeds of the deterministic
 * simulator and prints seeds/s; a failing seed prints its failures, the end
 * of its trace and the one command that replays it.
 */
const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1000' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    'keep-going': { type: 'boolean', default: false },
    faults: { type: 'string', default: FAULT_KINDS.join(',') },
  },
});
const kinds = values.faults.split(',') as FaultKind[];
if (kinds.some((k) => !FAULT_KINDS.includes(k))) {
  process.stderr.write(`--faults: a comma-separated list of ${FAULT_KINDS.join(', ')}\n`);
  process.exit(2);
}

const first = values.seed ? Number(values.seed) : Number(values.from);
const count = values.seed ? 1 : Number(values.seeds);
if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || count < 1) {
  process.stderr.write('usage: simulate [--seeds N] [--from S] [--seed S] [--keep-going] [--faults kind,...]\n');
  process.exit(2);
}

const started = performance.now();
let failed = 0;
let steps = 0;
let simulatedMs = 0;
for (let seed = first; seed < first + count; seed++) {
  const result = await simulate(seed, { kinds });
  steps += result.stats.steps;
  simulatedMs += result.stats.simulatedMs;
  if (result.failures.length > 0) {
    failed++;
    report(result);
    if (!values['keep-going']) break;
  }
  if ((seed - first + 1) % 500 === 0) progress(seed - first + 1);
}
progress(count, true);
process.exit(failed > 0 ? 1 : 0);

function progress(done: number, last = false): void {
  const seconds = (performance.now() - started) / 1000;
  const line = `${done} seeds in ${seconds.toFixed(1)} s: ${(done / seconds).toFixed(1)} seeds/s, ${Math.round(steps / seconds)} steps/s, ${(simulatedMs / 1000 / seconds).toFixed(0)}x real time, ${failed} failed`;
  process.stdout.write(`${line}${last ? '' : ' ...'}\n`);
}

function report(result: SimResult): void {
  process.stdout.write(`\nseed ${result.seed} FAILED\n${result.failures.map((f) => `  ${f}`).join('\n')}\n  trace (last lines):\n${result.trace.map((l) => `    ${l}`).join('\n')}\n`);
  const faults = values.faults === FAULT_KINDS.join(',') ? '' : ` FAULTS=${values.faults}`;
  process.stdout.write(`  replay: make simulate SEED=${result.seed}${faults}   (engine logs: SIM_LOG=debug make simulate SEED=${result.seed}${faults})\n\n`);
}
