/**
 * The search for the highest sustained rate within a time budget: the
 * offered rate doubles while steps are sustained; the first step that is
 * not (tried twice) bounds the peak from above, and the search bisects
 * between the best sustained rate and that bound until they are within
 * `precision` of each other. It then says whether it saturated (found the
 * bound and narrowed it), ran out of time, or ran out of rates.
 */
export type PeakSearchOptions = {
  firstRate: number;
  /** Largest rate ever offered (the generator's own limit). */
  maxRate: number;
  /** Stop bisecting when the failing rate is within this factor of the sustained one (1.1: 10%). */
  precision: number;
};

export type PeakSearchEnd = 'saturated' | 'budget' | 'max-rate';

export class PeakSearch {
  /** The best sustained rate so far, and the lowest rate seen not sustained. */
  private sustainedRate: number | null = null;
  private failedRate: number | null = null;
  private ended: PeakSearchEnd | null = null;

  constructor(private readonly o: PeakSearchOptions) {}

  /** The next rate to offer, or null when the search is over (`end` says why). */
  next(): number | null {
    if (this.ended) return null;
    if (this.failedRate === null) {
      const rate = this.sustainedRate === null ? this.o.firstRate : Math.min(this.sustainedRate * 2, this.o.maxRate);
      if (this.sustainedRate !== null && rate <= this.sustainedRate) return this.finish('max-rate');
      return rate;
    }
    const low = this.sustainedRate ?? 0;
    if (low > 0 && this.failedRate <= low * this.o.precision) return this.finish('saturated');
    // Below the first rate there is nothing left to find: the system does not sustain even that.
    if (low === 0 && this.failedRate <= this.o.firstRate / 8) return this.finish('saturated');
    // Midway, on a round figure when one lies strictly between the two.
    const middle = (low + this.failedRate) / 2;
    const round = Math.round(middle / 250) * 250;
    const rate = round > low && round < this.failedRate ? round : Math.round(middle);
    return rate > low && rate < this.failedRate ? rate : this.finish('saturated');
  }

  /** The outcome of offering `rate` (after its retry). */
  record(rate: number, sustained: boolean): void {
    if (sustained) {
      if (this.sustainedRate === null || rate > this.sustainedRate) this.sustainedRate = rate;
    } else if (this.failedRate === null || rate < this.failedRate) {
      this.failedRate = rate;
    }
  }

  /** The budget ran out before the search ended. */
  outOfTime(): void {
    this.ended ??= 'budget';
  }

  get end(): PeakSearchEnd | null {
    return this.ended;
  }

  /** What the search found: the bracket around the peak and how it ended. */
  get outcome(): { end: PeakSearchEnd | null; sustainedRate: number | null; failedRate: number | null } {
    return { end: this.ended, sustainedRate: this.sustainedRate, failedRate: this.failedRate };
  }

  private finish(end: PeakSearchEnd): null {
    this.ended = end;
    return null;
  }
}

/** `--peak-rates a,b,c`: the given rates in order, until one is not sustained. */
export class ListedRates {
  private index = 0;
  private ended: PeakSearchEnd | null = null;
  private sustainedRate: number | null = null;
  private failedRate: number | null = null;

  constructor(private readonly rates: number[]) {}

  next(): number | null {
    if (this.ended) return null;
    if (this.index >= this.rates.length) {
      this.ended = 'max-rate';
      return null;
    }
    return this.rates[this.index++];
  }

  record(rate: number, sustained: boolean): void {
    if (sustained) this.sustainedRate = Math.max(this.sustainedRate ?? 0, rate);
    else {
      this.failedRate = rate;
      this.ended = 'saturated';
    }
  }

  outOfTime(): void {
    this.ended ??= 'budget';
  }

  get outcome(): { end: PeakSearchEnd | null; sustainedRate: number | null; failedRate: number | null } {
    return { end: this.ended, sustainedRate: this.sustainedRate, failedRate: this.failedRate };
  }
}

/** A search over offered rates: the doubling-and-bisecting PeakSearch, or the listed rates in order. */
export type RateSearch = PeakSearch | ListedRates;

export type PeakSearchRun<S> = {
  /** The best sustained step (null: not even the first rate was), and the first step offered. */
  peak: S | null;
  first: S | null;
  outcome: { end: PeakSearchEnd | null; sustainedRate: number | null; failedRate: number | null };
};

/**
 * Runs a search: offers each rate it asks for with `step`, once more when a
 * step is not sustained but `worthRetrying` (a near miss: a hiccup of the
 * shared VM should not decide the peak; a step far over capacity is not
 * retried, it would only fail again at the cost of its time), and stops when the search ends or `budgetMs` since `startedAt`
 * has passed (checked before every step, retries included: out of time
 * before a retry, the step decides nothing and the search ended by its
 * budget).
 */
export async function runPeakSearch<S>(
  search: RateSearch,
  o: {
    step: (rate: number, again: boolean) => Promise<S>;
    sustained: (step: S) => boolean;
    worthRetrying: (step: S) => boolean;
    answeredPerSec: (step: S) => number;
    startedAt: number;
    budgetMs: number;
    stopping: () => boolean;
    say: (line: string) => void;
  },
): Promise<PeakSearchRun<S>> {
  let peak: S | null = null;
  let first: S | null = null;
  const outOfTime = (before: string) => {
    if (Date.now() - o.startedAt <= o.budgetMs) return false;
    o.say(`  peak search stopped at its time budget (${o.budgetMs / 1_000} s) before ${before}`);
    search.outOfTime();
    return true;
  };
  for (let rate = search.next(); rate !== null && !o.stopping(); rate = search.next()) {
    if (outOfTime(`${rate}/s`)) break;
    let step = await o.step(rate, false);
    first ??= step;
    if (!o.sustained(step) && o.worthRetrying(step) && !o.stopping()) {
      if (outOfTime(`retrying ${rate}/s`)) break;
      step = await o.step(rate, true);
    }
    search.record(rate, o.sustained(step));
    if (o.sustained(step) && (!peak || o.answeredPerSec(step) > o.answeredPerSec(peak))) peak = step;
  }
  return { peak, first, outcome: search.outcome };
}
