/**
 * A constant arrival rate, open loop: request i is due at
 * `startAt + i / rate`, whatever happened to the ones before it. A sender
 * that falls behind (a busy event loop, a GC pause) sends what is due at
 * once, and each request keeps its intended time, so its latency counts the
 * delay it suffered before being sent.
 */
export class OpenLoopSchedule {
  private readonly perMs: number;

  constructor(
    readonly ratePerSec: number,
    readonly startAt: number,
    readonly total: number,
  ) {
    if (!(ratePerSec > 0) || !Number.isFinite(ratePerSec))
      throw new RangeError(`rate must be a positive number, got ${ratePerSec}`);
    this.perMs = ratePerSec / 1_000;
  }

  /** How many requests are due by `now` (never more than `total`). */
  dueBy(now: number): number {
    if (now < this.startAt) return 0;
    return Math.min(this.total, Math.floor((now - this.startAt) * this.perMs) + 1);
  }

  intendedAt(i: number): number {
    return this.startAt + i / this.perMs;
  }

  get endsAt(): number {
    return this.intendedAt(this.total - 1);
  }
}

export type PaceOptions = {
  clock?: () => number;
  /** Waits about `ms` (default: a timer; the generator must not spin on cores it shares). */
  sleep?: (ms: number) => Promise<void>;
  /** Stops early when it turns true. */
  stopped?: () => boolean;
  /**
   * Called after each group of sends that fell due together, before sleeping:
   * a sender that only queues in `send` writes the group here (one write per
   * connection for all it got, not one per request).
   */
  afterBatch?: () => void;
};

/**
 * Sends every request of the schedule, each as soon as it is due: `send(i,
 * intendedAt)` is called in order, `afterBatch` after each group of them.
 * Resolves when all are sent.
 */
export async function pace(
  schedule: OpenLoopSchedule,
  send: (i: number, intendedAt: number) => void,
  options: PaceOptions = {},
): Promise<number> {
  const clock = options.clock ?? (() => performance.timeOrigin + performance.now());
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let sent = 0;
  while (sent < schedule.total && !options.stopped?.()) {
    const due = schedule.dueBy(clock());
    const before = sent;
    while (sent < due) {
      send(sent, schedule.intendedAt(sent));
      sent++;
    }
    if (sent > before) options.afterBatch?.();
    if (sent < schedule.total) await sleep(Math.max(0, Math.min(1, schedule.intendedAt(sent) - clock())));
  }
  return sent;
}
