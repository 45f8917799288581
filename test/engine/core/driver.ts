import { AuctionCore, type CoreConfig } from '../../../engine/core/index.js';
import type { BidOutcome, Command, CreateAuction, LifecycleOutcome, Outcome } from '../../../protocol/index.js';

export type LoggedCommand = { seq: number; t: number; command: Command };

/**
 * Feeds a core the way the engine does: each command gets the next sequence
 * number and the current time, due timers fire before anything later, and
 * every applied command is kept so the log can be replayed elsewhere.
 */
export class Driver {
  readonly core: AuctionCore;
  readonly log: LoggedCommand[] = [];
  now: number;

  constructor(config: Partial<CoreConfig> & { now?: number } = {}) {
    this.core = new AuctionCore({
      shard: config.shard ?? 7,
      auctionsMax: config.auctionsMax ?? 1024,
      idempotencyEntriesMax: config.idempotencyEntriesMax ?? 4096,
    });
    this.now = config.now ?? 1_700_000_000_000;
  }

  apply(command: Command): Outcome {
    const seq = this.core.lastSeq + 1;
    this.log.push({ seq, t: this.now, command });
    return this.core.apply(command, seq, this.now);
  }

  create(fields: Partial<Omit<CreateAuction, 'type'>> = {}): number {
    const outcome = this.apply({
      type: 'create',
      sellerId: 1,
      startingPrice: 1_000,
      reservePrice: 0,
      startsAt: 0,
      endsAt: this.now + 3_600_000,
      softCloseSeconds: 0,
      ...fields,
    });
    if (outcome.status !== 'accepted') throw new Error(`create rejected: ${outcome.reason}`);
    return outcome.auctionId;
  }

  bid(auctionId: number, bidderId: number, maxBid: number, bidId = this.core.lastSeq + 1): BidOutcome {
    return this.apply({ type: 'bid', auctionId, bidderId, bidId, maxBid }) as BidOutcome;
  }

  /** Moves time to `t` and applies every timer command due by then. */
  advanceTo(t: number): LifecycleOutcome[] {
    this.now = t;
    const fired: LifecycleOutcome[] = [];
    for (let due = this.core.takeDue(t); due; due = this.core.takeDue(t)) {
      fired.push(this.apply(due) as LifecycleOutcome);
    }
    return fired;
  }

  advanceBy(ms: number): LifecycleOutcome[] {
    return this.advanceTo(this.now + ms);
  }
}

/** Replays a log into a fresh core (or onto one restored from a snapshot). */
export function replay(log: LoggedCommand[], core: AuctionCore): AuctionCore {
  for (const { seq, t, command } of log) if (seq > core.lastSeq) core.apply(command, seq, t);
  return core;
}
