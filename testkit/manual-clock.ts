import type { Clock } from '../shard/ports.js';

/** A clock for unit tests: time moves only by `advance`, which then runs every repeating timer once. */
export type ManualClock = Clock & { advance(ms: number): void };

export function manualClock(startMs = 1_000_000): ManualClock {
  let now = startMs;
  const timers = new Set<() => void>();
  return {
    now: () => now,
    after: () => () => undefined,
    every: (_ms, fn) => {
      timers.add(fn);
      return () => timers.delete(fn);
    },
    soon: (fn) => queueMicrotask(fn),
    sleep: () => Promise.resolve(),
    advance: (ms) => {
      now += ms;
      for (const fn of [...timers]) fn();
    },
  };
}

/** Lets promise callbacks already settled run (a write's outcome) before the test moves time on. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
