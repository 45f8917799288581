import * as hdr from 'hdr-histogram-js';

/** Latencies are kept in microseconds, 1 µs to 2 minutes, 3 significant digits. */
const HIGHEST_US = 120_000_000;

export type PercentilePoint = { percentile: number; ms: number };

/** The percentiles every report shows, and the curve the HTML chart draws. */
export const REPORTED_PERCENTILES = [50, 90, 99, 99.9, 99.99, 100];
export const CURVE_PERCENTILES = [
  0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.25, 97.5, 98.4375, 99, 99.21875, 99.5, 99.6, 99.7, 99.8,
  99.9, 99.95, 99.99, 99.999, 100,
];

/**
 * An HDR histogram of latencies. Open-loop runs record each request from its
 * *intended* send time, so time spent queued behind a stall counts (no
 * coordinated omission: a stall shows in every request it delayed, not just
 * in the one that was in flight).
 */
export class Latency {
  readonly h: hdr.Histogram;

  constructor(h?: hdr.Histogram) {
    this.h =
      h ??
      hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3 });
  }

  /** A request meant to go out at `intendedAtMs` and answered at `answeredAtMs`. */
  record(intendedAtMs: number, answeredAtMs: number): void {
    this.h.recordValue(clampUs((answeredAtMs - intendedAtMs) * 1_000));
  }

  get count(): number {
    return this.h.totalCount;
  }

  ms(percentile: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(percentile) / 1_000;
  }

  percentiles(points: readonly number[] = REPORTED_PERCENTILES): PercentilePoint[] {
    return points.map((percentile) => ({ percentile, ms: this.ms(percentile) }));
  }

  add(other: Latency): void {
    this.h.add(other.h);
  }

  /** Compact text for crossing threads and files. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }

  static decode(text: string): Latency {
    return new Latency(hdr.decodeFromCompressedBase64(text));
  }
}

function clampUs(us: number): number {
  return Math.min(HIGHEST_US, Math.max(1, Math.round(us)));
}
