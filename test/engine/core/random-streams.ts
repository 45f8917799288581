import fc from 'fast-check';
import { AuctionCore } from '../../../engine/core/index.js';
import { SHARDS_MAX, type Command, type Outcome } from '../../../protocol/index.js';
import type { LoggedCommand } from './driver.js';
import { outcomeDifferences, ReferenceModel, type RefAnswer } from '../../../testkit/reference-model.js';

/**
 * Random command streams run through the fast core and the naive reference
 * model side by side. Small capacities make the rare paths common: full
 * shards, archived auctions, forgotten idempotency keys.
 */
export type Step =
  | { kind: 'create'; seller: number; start: number; reserve: number; startIn: number; duration: number; soft: number }
  | { kind: 'bid'; pick: number; bidder: number; bidId: number; max: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'cancel' | 'forceClose'; pick: number };

const amount = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 12_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -5, 1.5, Number.NaN, 2 ** 32, 4_294_967_295, 99, 100, 500, 2_500) },
);

export const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('create' as const),
      seller: fc.integer({ min: 1, max: 4 }),
      start: fc.integer({ min: 1, max: 3_000 }),
      reserve: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 9_000 })),
      startIn: fc.integer({ min: -1_000, max: 30_000 }),
      duration: fc.integer({ min: 1, max: 120_000 }),
      soft: fc.integer({ min: 0, max: 30 }),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('bid' as const),
      pick: fc.nat(),
      bidder: fc.integer({ min: 1, max: 6 }),
      bidId: fc.integer({ min: 1, max: 40 }),
      max: amount,
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 25_000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constantFrom('cancel' as const, 'forceClose' as const), pick: fc.nat() }),
  },
);

export const config = fc.record({
  auctionsMax: fc.constantFrom(3, 8, 64),
  rememberMax: fc.constantFrom(4, 64),
});

export const SHARD = 5;

export type Run = {
  core: AuctionCore;
  log: LoggedCommand[];
  outcomes: Outcome[];
  failures: string[];
};

/** Runs the steps through both models; collects every disagreement. */
export function run(steps: Step[], cfg: { auctionsMax: number; rememberMax: number }, checkEachStep = true): Run {
  const core = new AuctionCore({ shard: SHARD, auctionsMax: cfg.auctionsMax, idempotencyEntriesMax: cfg.rememberMax });
  const ref = new ReferenceModel(SHARD, cfg.auctionsMax, cfg.rememberMax);
  const log: LoggedCommand[] = [];
  const outcomes: Outcome[] = [];
  const failures: string[] = [];
  const ids: number[] = [];
  const lastPrice = new Map<number, number>();
  let now = 1_000_000;

  const applyBoth = (command: Command) => {
    const seq = core.lastSeq + 1;
    log.push({ seq, t: now, command });
    const mine = core.apply(command, seq, now);
    const theirs = ref.apply(command, seq, now);
    outcomes.push(mine);
    compareOutcome(mine, theirs, `#${seq} ${JSON.stringify(command)}`, failures);
    if (mine.type === 'create' && mine.status === 'accepted') ids.push(mine.auctionId);
    const touched = 'auctionId' in command ? command.auctionId : mine.auctionId;
    if (checkEachStep) compareState(core, ref, touched, `after #${seq}`, failures);
    const state = core.auctionState(touched);
    if (state) {
      if (state.price < (lastPrice.get(touched) ?? 0)) failures.push(`price went down on ${touched} at #${seq}`);
      lastPrice.set(touched, state.price);
    }
  };
  const pickId = (pick: number) =>
    pick % (ids.length + 1) < ids.length
      ? ids[pick % (ids.length + 1)]
      : 4 * SHARDS_MAX + SHARD + (ids.length + 9) * SHARDS_MAX;

  for (const s of steps) {
    if (s.kind === 'create') {
      const startsAt = s.startIn <= 0 ? 0 : now + s.startIn;
      applyBoth({
        type: 'create',
        sellerId: s.seller,
        startingPrice: s.start,
        reservePrice: s.reserve,
        startsAt,
        endsAt: Math.max(startsAt, now) + s.duration,
        softCloseSeconds: s.soft,
      });
    } else if (s.kind === 'bid') {
      applyBoth({ type: 'bid', auctionId: pickId(s.pick), bidderId: s.bidder, bidId: s.bidId, maxBid: s.max });
    } else if (s.kind === 'cancel') {
      applyBoth({ type: 'cancel', auctionId: pickId(s.pick) });
    } else if (s.kind === 'forceClose') {
      applyBoth({ type: 'close', auctionId: pickId(s.pick), force: true });
    } else if (s.kind === 'wait') {
      now += s.ms;
      for (;;) {
        const mine = core.takeDue(now);
        const theirs = ref.due(now);
        if (JSON.stringify(mine) !== JSON.stringify(theirs))
          failures.push(`due at ${now}: ${JSON.stringify(mine)} vs ${JSON.stringify(theirs)}`);
        if (!mine) break;
        applyBoth(mine);
      }
    }
    if (checkEachStep) core.verify();
  }
  return { core, log, outcomes, failures };
}

function compareOutcome(mine: Outcome, theirs: RefAnswer, where: string, failures: string[]): void {
  for (const difference of outcomeDifferences(mine, theirs)) failures.push(`${where}: ${difference}`);
}

function compareState(
  core: AuctionCore,
  ref: ReferenceModel,
  auctionId: number,
  where: string,
  failures: string[],
): void {
  const mine = core.auctionState(auctionId);
  const theirs = ref.state(auctionId);
  if (!mine || !theirs) {
    if (!!mine !== !!theirs) failures.push(`${where}: auction ${auctionId} exists in one model only`);
    return;
  }
  for (const key of [
    'status',
    'price',
    'leaderId',
    'bidCount',
    'endsAt',
    'version',
    'reserveMet',
    'winnerId',
  ] as const) {
    if (mine[key] !== theirs[key])
      failures.push(`${where}: state.${key} is ${mine[key]}, reference says ${theirs[key]}`);
  }
}
