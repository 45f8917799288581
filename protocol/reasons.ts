/**
 * Business outcomes of commands: every rejection carries exactly one of these
 * stable codes. A bid is checked in the documented order below and the first
 * failing check names the reason (docs/engine-core.md lists the same order).
 */
export const REASONS = {
  // Public (API v1: docs/openapi.yaml).
  auction_not_found: 'no auction has this id',
  auction_not_open: 'the auction has not started yet',
  auction_closed: 'the auction has ended or was cancelled',
  bid_too_low: 'the maximum is below the minimum acceptable bid',
  seller_cannot_bid: 'sellers cannot bid on their own auctions',
  invalid_amount: 'amounts must be whole cents between 1 and 4294967295',
  rate_limited: 'too many requests, or the auction has reached its bid limit',
  unavailable: 'the outcome was not recorded; retrying with the same bidId is safe',
  // Extensions.
  invalid_request: 'a field is missing, of the wrong type or out of range',
  forbidden: 'the caller may not do this (closing and cancelling auctions are operator actions)',
  shard_full: 'the shard has no free auction slot; an old auction must end first',
  not_due: 'a timer command arrived before its time',
  // Public (API.md "Load shedding"). Last, since binary records store a reason as its index here.
  overloaded: 'shed before it was decided: nothing was recorded; retry with the same bidId after retryAfterMs',
} as const;

export type Reason = keyof typeof REASONS;

/**
 * The answers after which sending the same command again is safe and
 * expected: `unavailable` (the outcome is unknown; a bid's retry is
 * idempotent by its bidId) and `overloaded` (shed before it was decided).
 */
export function isRetrySafe(code: string | undefined): boolean {
  return code === 'unavailable' || code === 'overloaded';
}

export const REASON_CODES = Object.keys(REASONS) as Reason[];

/** The order in which a bid's checks run; the first failure is the reason. */
export const BID_CHECK_ORDER: readonly Reason[] = [
  'invalid_request', // bidder or bid id malformed, or a remembered bid id reused for another auction
  // (a retried (bidder, bidId) of an accepted bid returns its original result here)
  'invalid_amount',
  'auction_not_found',
  'auction_closed', // ended, cancelled, archived, or endsAt already passed
  'auction_not_open', // scheduled and not opened yet
  'seller_cannot_bid',
  'rate_limited', // the auction's bid counter is full
  'bid_too_low',
];
