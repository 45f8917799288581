import { AuctionCore, InvariantError } from '../engine/core/index.js';
import type { LogBatch, Outcome } from '../protocol/index.js';

/** Decides a logged batch again; any difference from the logged outcome is divergence. */
export function replayBatch(core: AuctionCore, batch: LogBatch): void {
  for (const event of batch.events) {
    if (event.seq <= core.lastSeq) continue; // covered by the snapshot
    const outcome = core.apply(event.command, event.seq, batch.t);
    if (!sameOutcome(outcome, event.outcome)) {
      throw new InvariantError(
        `replay diverged at seq ${event.seq}: logged ${JSON.stringify(event.outcome)}, decided ${JSON.stringify(outcome)}`,
      );
    }
  }
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  for (const key of ['status', 'reason', 'auctionId', 'price', 'leaderId', 'endsAt', 'winnerId']) {
    if ((x[key] ?? null) !== (y[key] ?? null)) return false;
  }
  return true;
}
