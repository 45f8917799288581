import {
  shardOfAuction,
  type BidOutcome,
  type Command,
  type CommandResult,
  type LifecycleOutcome,
  type LogBatch,
} from '../../protocol/index.js';
import type { LiveState } from '../../protocol/public.js';
import { Checker } from '../simulator/checker.js';
import { notificationKey, type BidRecord } from './client.js';
import type { FaultRecord } from './faults.js';
import type { TargetKind } from './system.js';

/** A shard's stream as read back at the end: every stored batch in order. */
export type ShardEntries = { shard: number; entries: { streamSeq: number; batch: LogBatch }[] };

/** The longest wait for a decision clients saw around one fault group, against its bound. */
export type Outage = { group: number; faults: string; fromMs: number; maxOutageMs: number; boundMs: number };

export type Verdict = {
  ackedLost: number;
  acceptedTwice: number;
  /** Logged outcomes the reference rules contradict, answers the log contradicts, two writers or gaps. */
  ruleMismatches: number;
  /** Watchers whose newest state of an auction is not its final state. */
  stateMismatches: number;
  notificationsMissing: number;
  /** Of those, how many the NOTIFICATIONS stream holds (the gateways never delivered them; else the audit never wrote them). */
  notificationsMissingWritten: number;
  /** Valid bids answered with an error frame. */
  errorAnswers: number;
  /** Bids never decided (still retried when the run gave up on them). */
  undecided: number;
  outages: Outage[];
  maxOutageMs: number;
  /** The first failures of every checker, in words. */
  failures: string[];
};

/** Client-visible outage bounds per fault (issue 17): an engine or gateway fault 2 s, a NATS node 3 s. */
export const OUTAGE_BOUND_MS: Record<TargetKind, number> = {
  engine: 2_000,
  replica: 2_000,
  gateway: 2_000,
  audit: 2_000,
  nats: 3_000,
};
/** A fault's effects may show until this long after it is undone (a restarted process catching up). */
const SETTLE_MS = 2_000;
const FAILURES_SHOWN = 30;

/**
 * The notifications the log obliges the audit to send (issue 17 checks
 * `outbid` and `won`): an accepted, new bid that took the lead from someone
 * tells them `outbid`; a close with a winner tells the winner `won`. Keys as
 * `notificationKey` makes them from what clients receive.
 */
export function expectedNotifications(shards: ShardEntries[]): Map<string, { userId: number; what: string }> {
  const expected = new Map<string, { userId: number; what: string }>();
  for (const { entries } of shards)
    for (const { batch } of entries)
      for (const { command, outcome, seq } of batch.events) {
        if (command.type === 'bid') {
          const o = outcome as BidOutcome;
          if (o.status === 'accepted' && !o.duplicate && o.outbidUserId)
            expected.set(notificationKey(o.outbidUserId, 'outbid', command.auctionId, seq), {
              userId: o.outbidUserId,
              what: `outbid on ${command.auctionId} at seq ${seq}`,
            });
        } else if (command.type === 'close') {
          const o = outcome as LifecycleOutcome;
          if (o.status === 'accepted' && o.winnerId)
            expected.set(notificationKey(o.winnerId, 'won', o.auctionId, seq), {
              userId: o.winnerId,
              what: `won ${o.auctionId} at seq ${seq}`,
            });
        }
      }
  return expected;
}

const STATE_FIELDS = ['status', 'price', 'leaderId', 'bidCount', 'endsAt', 'version'] as const;

export type CheckInput = {
  shards: ShardEntries[];
  capacity: { auctionsMax: number; idempotencyEntriesMax: number };
  bids: BidRecord[];
  /** Each watcher's newest state of every auction it watched, and the auctions it should have seen. */
  watchers: { client: number; states: Map<number, LiveState> }[];
  watched: number[];
  /** Expected notification keys no client received, and how many of them the stream holds. */
  missingNotifications: string[];
  missingWritten: number;
  faults: FaultRecord[];
  /** When the run stopped bidding: bids still undecided count as waiting until then. */
  endedAt: number;
};

/** Every checker of the run over the whole history. */
export function check(input: CheckInput): Verdict {
  const failures: string[] = [];
  const note = (message: string) => {
    if (failures.length < FAILURES_SHOWN) failures.push(message);
  };
  const checkers = new Map<number, Checker>();
  for (const { shard, entries } of input.shards) {
    const checker = new Checker({ entries: () => entries }, { shard, ...input.capacity }, () => `shard ${shard}`);
    checker.absorbLog();
    checkers.set(shard, checker);
  }

  let errorAnswers = 0;
  let undecided = 0;
  let unrecordedMismatches = 0;
  for (const bid of input.bids) {
    if (bid.error) {
      errorAnswers++;
      note(`client ${bid.client}: bid ${bid.userId}/${bid.bidId} on ${bid.auctionId} answered with error ${bid.error}`);
      continue;
    }
    if (!bid.result) {
      undecided++;
      continue;
    }
    const checker = checkers.get(shardOfAuction(bid.auctionId));
    if (bid.result.seq === 0) {
      // Decided by the gateway without the engine: only right for an auction the log never created.
      if (checker?.stateOf(bid.auctionId)) {
        unrecordedMismatches++;
        note(`client ${bid.client}: bid on ${bid.auctionId} answered ${bid.result.reason} without the engine`);
      }
      continue;
    }
    if (!checker) {
      unrecordedMismatches++;
      note(`client ${bid.client}: answer for auction ${bid.auctionId} of a shard with no stream`);
      continue;
    }
    const command: Command = {
      type: 'bid',
      auctionId: bid.auctionId,
      bidderId: bid.userId,
      bidId: bid.bidId,
      maxBid: bid.maxBid,
    };
    checker.checkAnswer({ client: bid.client, command, result: bid.result as unknown as CommandResult, at: 0 });
  }

  let stateMismatches = 0;
  for (const { client, states } of input.watchers) {
    for (const auctionId of input.watched) {
      const final = checkers.get(shardOfAuction(auctionId))?.stateOf(auctionId);
      if (!final) continue;
      const seen = states.get(auctionId);
      const differs = !seen
        ? ['never seen']
        : STATE_FIELDS.filter((f) => seen[f] !== final[f]).map((f) => `${f} ${String(seen[f])} != ${String(final[f])}`);
      if (differs.length > 0) {
        stateMismatches++;
        note(`watcher ${client}: auction ${auctionId}: ${differs.join(', ')}`);
      }
    }
  }
  for (const key of input.missingNotifications.slice(0, 10)) note(`notification never received: ${key}`);

  const sum = (k: 'lost' | 'twice' | 'rules' | 'order') => [...checkers.values()].reduce((n, c) => n + c.counts[k], 0);
  for (const c of checkers.values()) for (const f of c.failures) note(f);

  const outages = outagesOf(input.bids, input.faults, input.endedAt);
  for (const o of outages)
    if (o.maxOutageMs > o.boundMs)
      note(`fault group ${o.group} (${o.faults}): clients waited ${o.maxOutageMs} ms > ${o.boundMs} ms`);
  return {
    ackedLost: sum('lost'),
    acceptedTwice: sum('twice'),
    ruleMismatches: sum('rules') + sum('order') + unrecordedMismatches,
    stateMismatches,
    notificationsMissing: input.missingNotifications.length,
    notificationsMissingWritten: input.missingWritten,
    errorAnswers,
    undecided,
    outages,
    maxOutageMs: outages.reduce((m, o) => Math.max(m, o.maxOutageMs), 0),
    failures,
  };
}

/**
 * Per fault group, the longest time a bid waited for its decision among the
 * bids waiting at some moment between the group's start and SETTLE_MS after
 * its end: the outage the fault cost the clients it touched. A bid sent
 * while two groups' windows overlap counts for the later one if it was sent
 * after that one began (the later fault is what it met: make chaos SEED=301
 * charged an 8.4 s NATS election to an engine kill whose restart ended 1.6 s
 * before the NATS kill); a bid whose wait began earlier and spans both counts
 * for the earlier one, which caused it.
 */
export function outagesOf(bids: BidRecord[], faults: FaultRecord[], endedAt: number): Outage[] {
  const byGroup = new Map<number, FaultRecord[]>();
  for (const f of faults) byGroup.set(f.group, [...(byGroup.get(f.group) ?? []), f]);
  const first = faults.reduce((m, f) => Math.min(m, f.startedAt), Infinity);
  const groups = [...byGroup]
    .map(([group, members]) => ({
      group,
      members,
      from: Math.min(...members.map((f) => f.startedAt)),
      to: Math.max(...members.map((f) => f.endedAt)) + SETTLE_MS,
      longest: 0,
    }))
    .sort((a, b) => a.from - b.from);
  for (const bid of bids) {
    const decided = bid.decidedAt ?? endedAt;
    const sentDuring = groups.filter((x) => x.from <= bid.sentAt && bid.sentAt <= x.to);
    const g = sentDuring.at(-1) ?? groups.find((x) => bid.sentAt <= x.to && decided >= x.from);
    if (g) g.longest = Math.max(g.longest, decided - bid.sentAt);
  }
  return groups
    .map(({ group, members, from, longest }) => ({
      group,
      faults: members.map(describe).join(' + '),
      fromMs: from - first,
      maxOutageMs: longest,
      boundMs: Math.max(...members.map((f) => OUTAGE_BOUND_MS[f.targetKind])),
    }))
    .sort((a, b) => a.group - b.group);
}

export function describe(
  f: FaultRecord | { kind: string; target: string; durationMs: number; direction?: string },
): string {
  return `${f.kind}${f.direction ? `(${f.direction})` : ''} ${f.target} ${f.durationMs} ms`;
}
