/**
 * Admission control for one shard (issue 17): how many of this gateway's
 * commands may be outstanding for the shard (queued here or sent to its
 * engine, unanswered) before new bids are shed with `overloaded`.
 *
 * The budget is what the shard answers in one round trip plus
 * `queueTargetMs`: its drain rate, measured only while busy (commands queued
 * here waiting for the engine, or bids refused since the last answer: then
 * the rate is the shard's capacity or the budget's, not the offered load),
 * times the round trip of a request (what keeps the pipe
 * full: the engine's deciding and appending, the network; not the time
 * this gateway's own event loop ran late, which the router takes out)
 * plus the part of the target the engine's own queue leaves (other gateways'
 * commands wait there too; the engine reports that time with every answer).
 * By Little's law a command admitted then queues about `queueTargetMs` at
 * worst, here and at the engine together, far inside the command timeout,
 * so overload turns into fast `overloaded` answers instead of a queue that
 * grows until everything times out (each timed-out command was still decided:
 * work done for nobody). Until the shard has been measured busy the budget is
 * `inFlightMax`; it never falls below IN_FLIGHT_MIN.
 */
export type AdmissionOptions = {
  /** How long an admitted command may expect to wait for its answer (ms). */
  queueTargetMs: number;
  /** The budget's ceiling (commands outstanding for one shard). */
  inFlightMax: number;
};

/** Commands a shard always admits: a little more than a small request, so a trickle never sheds. */
export const IN_FLIGHT_MIN = 64;
/** Weight of each new sample in the moving averages (the last ~10 answers dominate). */
const SMOOTHING = 0.2;
/** What `retryAfterMs` says at least and at most. */
const RETRY_AFTER_MS = { min: 10, max: 5_000 };

export class ShardBudget {
  private outstanding = 0;
  /** Answers per ms while backlogged; 0 until measured. */
  private drainPerMs = 0;
  private engineQueuedMs = 0;
  /** A request's round trip without the engine's queue time. */
  private serviceMs = 0;
  /** When the previous answer came, if commands were still queued here behind it (a busy interval began). */
  private busySince: number | null = null;
  /** A bid was shed since the last answer: demand exceeded the budget, so the shard was as busy as allowed. */
  private refused = false;

  constructor(private readonly options: AdmissionOptions) {}

  /** Commands admitted and not yet answered. */
  get inFlight(): number {
    return this.outstanding;
  }

  get limit(): number {
    const { queueTargetMs, inFlightMax } = this.options;
    if (this.drainPerMs === 0) return inFlightMax;
    const leftOfTarget = Math.max(0, queueTargetMs - this.engineQueuedMs);
    const allowed = this.drainPerMs * (this.serviceMs + leftOfTarget);
    return Math.round(Math.min(inFlightMax, Math.max(IN_FLIGHT_MIN, allowed)));
  }

  /** Takes a place for a sheddable command; false: shed it. */
  admit(): boolean {
    if (this.outstanding >= this.limit) {
      this.refused = true; // demand over the budget: the next answer closes a busy interval
      return false;
    }
    this.outstanding++;
    return true;
  }

  /** Takes a place whatever the budget says (creations, operators' commands: never shed here). */
  take(): void {
    this.outstanding++;
  }

  /**
   * When a shed command may come again: about the time the shard needs for
   * what is outstanding, spread by +-50% so the shed clients do not all come
   * back in the same millisecond.
   */
  retryAfterMs(random: () => number = Math.random): number {
    const drainMs = this.drainPerMs > 0 ? this.outstanding / this.drainPerMs : this.options.queueTargetMs;
    const spread = drainMs * (0.5 + random());
    return Math.round(Math.min(RETRY_AFTER_MS.max, Math.max(RETRY_AFTER_MS.min, spread)));
  }

  /**
   * `answered` commands came back at `now` (ms, monotonic), `roundTripMs`
   * after their request left; `engineQueuedMs` is the engine's queue time for
   * them when it gave one; `stillQueued` says whether commands wait here for
   * the shard after this answer.
   */
  onAnswered(
    answered: number,
    now: number,
    roundTripMs: number,
    engineQueuedMs: number | undefined,
    stillQueued: boolean,
  ): void {
    this.outstanding = Math.max(0, this.outstanding - answered);
    const queued = engineQueuedMs ?? 0;
    this.engineQueuedMs += SMOOTHING * (queued - this.engineQueuedMs);
    const service = Math.max(0, roundTripMs - queued);
    this.serviceMs = this.serviceMs === 0 ? service : this.serviceMs + SMOOTHING * (service - this.serviceMs);
    if (this.busySince !== null && now > this.busySince) {
      const rate = answered / (now - this.busySince);
      this.drainPerMs = this.drainPerMs === 0 ? rate : this.drainPerMs + SMOOTHING * (rate - this.drainPerMs);
    }
    // Busy: commands wait here, or bids were refused (all admitted ones are out; the rate is then the
    // budget over the round trip, and the budget grows by target/round trip each time: it cannot stick low).
    this.busySince = stillQueued || this.refused ? now : null;
    this.refused = false;
  }

  /** What the metrics and the status show. */
  get view(): { inFlight: number; limit: number; drainPerSec: number; engineQueuedMs: number; serviceMs: number } {
    return {
      inFlight: this.outstanding,
      limit: this.limit,
      drainPerSec: Math.round(this.drainPerMs * 1_000),
      engineQueuedMs: Math.round(this.engineQueuedMs * 10) / 10,
      serviceMs: Math.round(this.serviceMs * 10) / 10,
    };
  }
}
