import { AuctionCore } from '../../engine/core/index.js';
import type { Command, CommandResult, LogBatch, LogEvent } from '../../protocol/index.js';
import { outcomeDifferences, ReferenceModel } from '../reference-model.js';
import type { Answer } from './clients.js';

/** What the checker needs of the log: stored batches in order. */
export type LogView = { entries(): readonly { streamSeq: number; batch: LogBatch }[] };

/** What the checker needs of a copy to compare it with the log. */
export type CopyView = { status: string; streamSeq: number; lastSeq: number; durableSeq: number; stateHash: string };

/** What a duplicate answer carries of the original bid's answer. */
const DUPLICATE_KEYS = ['status', 'auctionId', 'price', 'leading', 'endsAt'] as const;

/**
 * What a failure broke: the log's order (one writer, gapless sequences), the
 * rules (a logged outcome or an answer that the reference rules or the log
 * contradict), an acknowledged bid the log does not hold (lost), a bidId
 * accepted twice, or a copy's state.
 */
export type FailureKind = 'order' | 'rules' | 'lost' | 'twice' | 'copy';

/** Logged events kept to check answers against; a run never comes near it. */
const EVENTS_MAX = 1_000_000;

/**
 * The invariants of a run, checked as the log grows, as answers arrive and
 * as copies move:
 * - one writer per log position: every batch after a fence is written by
 *   that fence's writer, and event sequences are gapless across writers;
 * - every logged outcome is what the reference rules give for the logged
 *   commands, in log order (test of the engine core and of replay);
 * - every decided answer is already in the log when it is given (answers
 *   after append, never before), is the logged outcome of its own command,
 *   and an accepted bid is logged exactly once (no bidId accepted twice);
 * - every copy with nothing undecided has the state hash of the log at its
 *   position.
 */
export class Checker {
  /** The first failures, for the report; `counts` has them all. */
  readonly failures: string[] = [];
  readonly counts: Record<FailureKind, number> = { order: 0, rules: 0, lost: 0, twice: 0, copy: 0 };
  private absorbed = 0;
  private writer: string | null = null;
  private lastEventSeq = 0;
  private readonly reference: ReferenceModel;
  private readonly replay: AuctionCore;
  private readonly hashes = new Map<number, string>();
  private readonly events = new Map<number, LogEvent & { t: number }>();
  private readonly acceptedBids = new Map<string, number>();
  answersChecked = 0;

  constructor(
    private readonly log: LogView,
    config: { shard: number; auctionsMax: number; idempotencyEntriesMax: number },
    private readonly where: () => string,
  ) {
    this.reference = new ReferenceModel(config.shard, config.auctionsMax, config.idempotencyEntriesMax);
    this.replay = new AuctionCore(config);
    this.hashes.set(0, this.replay.stateHash());
  }

  fail(message: string, kind: FailureKind = 'rules'): void {
    this.counts[kind]++;
    if (this.failures.length < 20) this.failures.push(`${this.where()}: ${message}`);
  }

  get logEvents(): number {
    return this.lastEventSeq;
  }

  /** Takes in every batch stored since the last call. */
  absorbLog(): void {
    const entries = this.log.entries();
    for (; this.absorbed < entries.length; this.absorbed++)
      this.absorb(entries[this.absorbed].streamSeq, entries[this.absorbed].batch);
  }

  private absorb(streamSeq: number, batch: LogBatch): void {
    if (batch.leader) {
      if (batch.events.length > 0) this.fail(`fence at ${streamSeq} carries events`, 'order');
      this.writer = batch.writer;
    } else if (batch.writer !== this.writer) {
      this.fail(
        `stream message ${streamSeq} written by ${batch.writer} after the fence of ${this.writer}: two writers`,
        'order',
      );
    }
    for (const event of batch.events) {
      if (event.seq !== this.lastEventSeq + 1)
        this.fail(`event seq ${event.seq} follows ${this.lastEventSeq} at stream message ${streamSeq}`, 'order');
      this.lastEventSeq = event.seq;
      const expected = this.reference.apply(event.command, event.seq, batch.t);
      for (const difference of outcomeDifferences(event.outcome, expected))
        this.fail(`logged outcome of seq ${event.seq} (${event.command.type}): ${difference}`);
      this.replay.apply(event.command, event.seq, batch.t);
      if (event.command.type === 'bid' && event.outcome.status === 'accepted') {
        const key = `${event.command.bidderId}/${event.command.bidId}`;
        const earlier = this.acceptedBids.get(key);
        if (earlier !== undefined) this.fail(`bid ${key} accepted twice: seq ${earlier} and ${event.seq}`, 'twice');
        else this.acceptedBids.set(key, event.seq);
      }
      if (this.events.size >= EVENTS_MAX) throw new Error('simulation too long for the checker');
      this.events.set(event.seq, { ...event, t: batch.t });
    }
    this.hashes.set(streamSeq, this.replay.stateHash());
  }

  /** The state of an auction by the reference rules over the log absorbed so far (null: the log never created it). */
  stateOf(auctionId: number) {
    return this.reference.state(auctionId);
  }

  /** A decided answer: its event must be in the log already and be the outcome given. */
  checkAnswer(answer: Answer): void {
    this.absorbLog();
    this.answersChecked++;
    const result = answer.result as CommandResult & { seq?: number; duplicate?: boolean };
    if (result.status === 'error') {
      this.fail(`client ${answer.client} got ${result.code} for ${JSON.stringify(answer.command)}: ${result.message}`);
      return;
    }
    const event = result.seq === undefined ? undefined : this.events.get(result.seq);
    if (!event) {
      this.fail(
        `client ${answer.client} was answered ${result.status} at seq ${result.seq} for ${JSON.stringify(answer.command)}, which the log does not hold (acknowledged before durable, or lost)`,
        result.status === 'accepted' ? 'lost' : 'rules',
      );
      return;
    }
    if (!sameCommand(event.command, answer.command)) {
      this.fail(
        `answer seq ${result.seq} points at ${JSON.stringify(event.command)}, not at the command sent ${JSON.stringify(answer.command)}`,
      );
      return;
    }
    const logged = event.outcome as unknown as Record<string, unknown>;
    // A retry of a remembered bid repeats what the idempotency table keeps of the original (docs/engine-core.md).
    const compared = result.duplicate
      ? DUPLICATE_KEYS.map((key) => [key, (result as Record<string, unknown>)[key]] as const)
      : Object.entries(result);
    for (const [key, value] of compared) {
      if (key === 'duplicate' || key === 'seq') continue;
      if (key in logged && !Object.is(logged[key], value))
        this.fail(`answer to seq ${result.seq}: ${key} is ${String(value)}, the log says ${String(logged[key])}`);
    }
    if (result.duplicate && event.outcome.status !== 'accepted')
      this.fail(`duplicate answer at seq ${result.seq} repeats a rejection`);
  }

  /** A copy with nothing undecided must have the log's state at its position. */
  checkCopy(name: string, copy: CopyView): void {
    if (copy.lastSeq !== copy.durableSeq) return;
    const expected = this.hashes.get(copy.streamSeq);
    if (expected === undefined) {
      if (copy.streamSeq > (this.log.entries().at(-1)?.streamSeq ?? 0))
        this.fail(`${name} (${copy.status}) is at stream message ${copy.streamSeq}, beyond the log`, 'copy');
      return;
    }
    if (copy.stateHash !== expected)
      this.fail(
        `${name} (${copy.status}) at stream message ${copy.streamSeq} has state hash ${copy.stateHash}, the log gives ${expected}`,
        'copy',
      );
  }
}

function sameCommand(a: Command, b: Command): boolean {
  return JSON.stringify(a, Object.keys(a).sort()) === JSON.stringify(b, Object.keys(b).sort());
}
