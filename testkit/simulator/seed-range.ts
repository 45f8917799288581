import type { Test } from 'tap';
import { simulate } from './simulate.js';

/**
 * Runs seeds [from, from + count) as one tap test each: a failing seed's
 * assertion names its failures, the end of its trace and the command that
 * replays it.
 */
export async function runSeedRange(t: Test, from: number, count: number): Promise<void> {
  for (let seed = from; seed < from + count; seed++) {
    const result = await simulate(seed);
    const detail =
      result.failures.length === 0
        ? ''
        : `\n${result.failures.join('\n')}\ntrace:\n${result.trace.join('\n')}\nreplay: make simulate SEED=${seed}`;
    t.same(
      result.failures,
      [],
      `seed ${seed}: every invariant held (${result.stats.answers} answers, ${result.stats.logEvents} events, worst serve-again ${result.stats.worstServeAgainMs} ms)${detail}`,
    );
  }
}
