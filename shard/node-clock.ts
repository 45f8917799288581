import type { Cancel, Clock } from './ports.js';

/**
 * The real clock: Date.now and Node's timers. Repeating timers are unref'd
 * (housekeeping never keeps a process alive); one-shot timers are not, since
 * a shard waiting for an auction's end must not let its process exit.
 */
export const nodeClock: Clock = {
  now: () => Date.now(),
  after(ms: number, fn: () => void): Cancel {
    const timer = setTimeout(fn, Math.min(Math.max(0, ms), 2 ** 31 - 1));
    return () => clearTimeout(timer);
  },
  every(ms: number, fn: () => void): Cancel {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
  soon(fn: () => void): void {
    setImmediate(fn);
  },
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
};
