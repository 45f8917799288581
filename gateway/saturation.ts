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
 * length of the turns in between. While that lag is over `lagTargetMs`, the
 * share of bids answered `overloaded` at once (before any rate limit,
 * router or engine work; a shed bid is never recorded and is safe to send
 * again) grows a step per late sample; while the loop is on time it falls
 * back by a smaller step, so shedding settles at the share the gateway can
 * afford instead of swinging between all and nothing. It never reaches 1:
 * some bids always pass, so the shard budgets and the lag keep being
 * measured on real traffic.
 */
export type SaturationOptions = {
  /** Event-loop lag above which bids start being shed (ms); 0 turns shedding at the frame off. */
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
/** Share added per sample over the target, and taken away per sample on time. */
const STEP_UP = 0.05;
const STEP_DOWN = 0.02;
const SAMPLE_EVERY_MS = 10;
/** `retryAfterMs` of a bid shed here: about the lag, spread, within these bounds. */
const RETRY_AFTER_MS = { min: 50, max: 2_000 };

export class LoopSaturation {
  private shedShare = 0;
  private lastLagMs = 0;
  private due = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly sampleEveryMs: number;
  private readonly now: () => number;

  constructor(private readonly options: SaturationOptions) {
    this.sampleEveryMs = options.sampleEveryMs ?? SAMPLE_EVERY_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** Samples the lag until `stop` (an unref'd timer: it never keeps the process alive). */
  start(): void {
    if (this.timer || this.options.lagTargetMs <= 0) return;
    this.due = this.now() + this.sampleEveryMs;
    const tick = () => {
      this.sample();
      this.timer = setTimeout(tick, this.sampleEveryMs);
      this.timer.unref();
    };
    this.timer = setTimeout(tick, this.sampleEveryMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One sample: the timer was due at `due` and runs now. Public for tests, which drive the clock. */
  sample(): void {
    const now = this.now();
    this.lastLagMs = Math.max(0, now - this.due);
    this.due = now + this.sampleEveryMs;
    const next =
      this.lastLagMs > this.options.lagTargetMs
        ? Math.min(SHED_SHARE_MAX, this.shedShare + STEP_UP)
        : Math.max(0, this.shedShare - STEP_DOWN);
    const share = Math.round(next * 100) / 100; // whole percents: the steps add up to exactly 0 again
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

  /** The lag of the last sample (ms): also how late any answer is leaving now. */
  get lagMs(): number {
    return this.lastLagMs;
  }

  get share(): number {
    return this.shedShare;
  }
}
