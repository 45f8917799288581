/**
 * Money is integer minor units (cents). The engine keeps prices and maxima in
 * 32-bit slots of its hot state, so the largest amount it can represent is
 * AMOUNT_CENTS_MAX ($42,949,672.95); larger amounts are rejected with
 * `invalid_amount`, never rounded.
 */
export const AMOUNT_CENTS_MAX = 0xffff_ffff;

/** A whole number of cents the engine can hold (at least one cent). */
export function isAmountCents(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= AMOUNT_CENTS_MAX;
}

/**
 * The bid increment at a price, from eBay's US table: the step a competing
 * maximum must clear. Each row is [price below which it applies, increment].
 */
export const INCREMENT_TABLE: ReadonlyArray<readonly [priceBelowCents: number, incrementCents: number]> = [
  [100, 5], // below $1: $0.05
  [500, 25], // $1 to $4.99: $0.25
  [2_500, 50], // $5 to $24.99: $0.50
  [10_000, 100], // $25 to $99.99: $1
  [25_000, 250], // $100 to $249.99: $2.50
  [50_000, 500], // $250 to $499.99: $5
  [100_000, 1_000], // $500 to $999.99: $10
  [250_000, 2_500], // $1,000 to $2,499.99: $25
  [500_000, 5_000], // $2,500 to $4,999.99: $50
  [Infinity, 10_000], // $5,000 and up: $100
];

export function incrementAt(priceCents: number): number {
  // Unrolled: this sits on the bid path.
  if (priceCents < 100) return 5;
  if (priceCents < 500) return 25;
  if (priceCents < 2_500) return 50;
  if (priceCents < 10_000) return 100;
  if (priceCents < 25_000) return 250;
  if (priceCents < 50_000) return 500;
  if (priceCents < 100_000) return 1_000;
  if (priceCents < 250_000) return 2_500;
  if (priceCents < 500_000) return 5_000;
  return 10_000;
}
