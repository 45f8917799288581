/**
 * The gateway's own saturation (issue 17): how late its event loop runs,
 * and the share of new bids to shed at the frame because of it.
 *
 * The shard budgets (admission.ts) shed what a shard cannot take; they
 * cannot see a gateway that is itself the bottleneck. Then frames wait in
 * the sockets' kernel buffers, unread, every answer leaves late, and the
 * round trips the budgets measure grow with this gateway's own delay, so
 * the budgets grow too and never bind. What does show it is the event
 * loop's lag: a timer due every `sampleEveryMs` that runs late by the
 * length of the turns in between. Each sample later than `lagTargetMs`
 * that follows another late one raises the share of bids answered
 * `overloaded` at once (after the frame's parsing and validation, before
 * the user's rate limit, the router or any engine work; a shed bid is never
 * recorded and is safe to send again) by STEP_UP: per late turn, so one
 * long pause counts once, and a lone late turn (a GC pause) not at all.
 * Time on schedule lowers it by FALL_PER_SEC, so shedding settles at the
 * share the gateway can afford instead of swinging between all and
 * nothing, and is gone within 2 s of the end of an overload. It never
 * reaches 1: some bids always pass, so the shard budgets and the lag keep
 * being measured on real traffic.
 */
export type SaturationOptions = {
  /** Event-loop lag above which bids start being shed (ms); 0 turns sampling, and so shedding here, off. */
  lagTargetMs: number;
  /** How often the lag is sampled (ms). */
  sampleEveryMs?: number;
  /** Monotonic clock in ms (tests). */
  now?: () => number;
  /** Called with the new share whenever it changes (the metric). */
  onShareChange?: (share: number) => void;
};

/** The share of bids shed at most: some always pass. */
export const SHED_SHARE_MAX = 0.9;
/** Share added by each sample over the target that follows another. */
export const STEP_UP = 0.05;
/** Share taken away per second of samples on time (from the ceiling to 0 in 1.8 s). */
export const FALL_PER_SEC = 0.5;
const SAMPLE_EVERY_MS = 10;
/** `retryAfterMs` of a bid shed here: about the lag, spread, within these bounds. */
const RETRY_AFTER_MS = { min: 50, max: 2_000 };

export class LoopSaturation {
  private shedShare = 0;
  private lastLagMs = 0;
  private previousLate = false;
  /** When the last sample ran (its lag ended then), and when the next is due. */
  private sampledAt = 0;
  private due = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly sampleEveryMs: number;
  private readonly now: () => number;

  constructor(private readonly options: SaturationOptions) {
    this.sampleEveryMs = options.sampleEveryMs ?? SAMPLE_EVERY_MS;
    this.now = options.now ?? (() => performance.now());
    this.sampledAt = this.now();
    this.due = this.sampledAt + this.sampleEveryMs;
  }

  /** Samples the lag until `stop` (an unref'd timer: it never keeps the process alive). */
  start(): void {
    if (this.timer || this.stopped || this.options.lagTargetMs <= 0) return;
    this.due = this.now() + this.sampleEveryMs;
    const tick = () => {
      this.sample();
      if (this.stopped) return;
      this.timer = setTimeout(tick, this.sampleEveryMs);
      this.timer.unref();
    };
    this.timer = setTimeout(tick, this.sampleEveryMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One sample: the timer was due at `due` and runs now. Public for tests, which drive the clock. */
  sample(): void {
    const now = this.now();
    const elapsedMs = Math.max(0, now - this.sampledAt);
    this.lastLagMs = Math.max(0, now - this.due);
    this.sampledAt = now;
    this.due = now + this.sampleEveryMs;
    const late = this.lastLagMs > this.options.lagTargetMs;
    let share = !late
      ? this.shedShare - (FALL_PER_SEC * elapsedMs) / 1_000
      : this.previousLate
        ? Math.min(SHED_SHARE_MAX, this.shedShare + STEP_UP)
        : this.shedShare;
    this.previousLate = late;
    share = share < 0.001 ? 0 : Math.round(share * 1_000) / 1_000;
    if (share === this.shedShare) return;
    this.shedShare = share;
    this.options.onShareChange?.(share);
  }

  /** Whether to shed this bid (a draw against the current share). */
  shouldShed(random: () => number = Math.random): boolean {
    return this.shedShare > 0 && random() < this.shedShare;
  }

  /** When a bid shed here may come again: about one lag, spread by +-50% so they do not all return at once. */
  retryAfterMs(random: () => number = Math.random): number {
    const spread = Math.max(this.lastLagMs, this.options.lagTargetMs) * (0.5 + random());
    return Math.round(Math.min(RETRY_AFTER_MS.max, Math.max(RETRY_AFTER_MS.min, spread)));
  }

  /**
   * How much of `[from, to]` (ms, the same clock) this event loop spent
   * late, as far as the last sample saw: the overlap with its lag, which
   * ended when it ran. A round trip that overlaps it waited partly for this
   * gateway, not for the shard.
   */
  lateWithin(from: number, to: number): number {
    const lateFrom = this.sampledAt - this.lastLagMs;
    return Math.max(0, Math.min(to, this.sampledAt) - Math.max(from, lateFrom));
  }

  /** The lag of the last sample (ms). */
  get lagMs(): number {
    return this.lastLagMs;
  }

  get share(): number {
    return this.shedShare;
  }
}
