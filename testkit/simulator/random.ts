import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

/** Resolution of `chance`: probabilities are compared against a draw in [0, 2^31). */
const CHANCE_RANGE = 2 ** 31;

/**
 * The simulator's only source of randomness: a seeded xoroshiro128+ stream.
 * Every decision of a run (latencies, faults, client behaviour) is drawn from
 * one of these, so the same seed replays the same run exactly.
 */
export class Random {
  private rng: RandomGenerator;

  /** xoroshiro128+ seeds from 32 bits: seeds equal modulo 2^32 give the same stream. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`a seed must be a safe integer, not ${seed}`);
    this.rng = xoroshiro128plus(seed);
  }

  /** A uniform integer in [lo, hi], both ends included. */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo > hi)
      throw new Error(`int(${lo}, ${hi}): not a range of integers`);
    return uniformInt(this.rng, lo, hi);
  }

  /**
   * True with probability `p`. It always draws, whatever `p`, so that turning
   * a fault rate up or down does not shift every later draw of the stream.
   */
  chance(p: number): boolean {
    return this.int(0, CHANCE_RANGE - 1) < p * CHANCE_RANGE;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(0, items.length - 1)];
  }

  /**
   * An independent child stream. Its state is four draws of this one, so it
   * depends only on where this stream is; jumping would make a child's own
   * children overlap its parent.
   */
  fork(): Random {
    const state: number[] = [this.rng.next(), this.rng.next(), this.rng.next(), this.rng.next()];
    // The all-zero state is xoroshiro's one fixed point: it would draw zeros forever.
    if (!state.some((word) => word !== 0)) state[0] = 1;
    const child = new Random(0);
    child.rng = xoroshiro128plusFromState(state);
    return child;
  }
}
