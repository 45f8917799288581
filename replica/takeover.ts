import type { Logger } from 'pino';
import { encodeLog, type LogBatch } from '../protocol/index.js';
import type { CopyState } from '../shard/copy-state.js';
import { logMsgId, type Clock, type ShardLogPort } from '../shard/ports.js';
import type { ShardLease } from './lease.js';

export type TakeOverContext = {
  state: CopyState;
  log: ShardLogPort;
  lease: ShardLease;
  clock: Clock;
  logger: Logger;
  writer: string;
  engineId: string;
  appendTimeoutMs: number;
  /** False once the copy's taking-over role has ended (a stop, placement): stop at the next step. */
  current: () => boolean;
  onLeaseLost: (why: string) => void;
  /** Whether the copy decides commands now (for the lease: see ShardLease.keepRenewing). */
  deciding: () => boolean;
};

/** Fence appends tried before the takeover gives up (each after catching up again). */
const FENCE_ATTEMPTS_MAX = 20;

/**
 * The lease lapsed (or was free at start, or was handed to us): catch up to
 * the log's tail, take the lease by compare-and-set (only one copy wins),
 * then append the fence: an empty batch naming the new leader and expecting
 * the tail we applied. If someone slipped a batch in, catch up and fence
 * again while the lease is ours. Every step first checks that the role still
 * lasts, so a copy stopped in the middle neither takes the lease nor writes.
 */
export async function takeOver(c: TakeOverContext): Promise<{ fenced: true } | { fenced: false; why: string }> {
  await c.state.catchUp(c.current);
  if (!c.current()) return { fenced: false, why: 'stopped while catching up' };
  // The last holder's word on what was durable, for a copy that knew less (a new replica, an empty data directory).
  c.state.expectLogReaches(c.state.durableStreamSeq, c.lease.holder?.streamSeq ?? 0, 'the last lease holder wrote');
  if (!(await c.lease.acquire()))
    return { fenced: false, why: 'lease not acquired (another copy holds it, or the bucket did not answer)' };
  if (!c.current()) return { fenced: false, why: 'stopped while taking the lease' };
  c.lease.keepRenewing(c.onLeaseLost, { deciding: c.deciding, logOursAt: () => c.state.logOursAt });
  for (let attempt = 1; ; attempt++) {
    const fence: LogBatch = {
      v: 1,
      shard: c.state.shard,
      writer: c.writer,
      t: Math.max(c.clock.now(), c.state.core.lastTimestampMs),
      events: [],
      leader: { engineId: c.engineId, writer: c.writer },
    };
    try {
      const sentAt = c.clock.now();
      const ack = await c.log.append(encodeLog(fence), c.state.durableStreamSeq, c.writer, c.appendTimeoutMs);
      c.state.logOursAt = sentAt;
      c.state.durableStreamSeq = ack.seq;
      c.state.expectStreamSeq = ack.seq;
      c.state.expectMsgId = logMsgId(c.state.shard, ack.seq, c.writer);
      break;
    } catch (error) {
      if (!c.lease.held) return { fenced: false, why: 'lease lost while fencing' };
      if (attempt >= FENCE_ATTEMPTS_MAX) throw error;
      c.logger.warn({ err: (error as Error).message, attempt }, 'fence append failed; catching up');
      await c.state.catchUp(c.current);
    }
    if (!c.current()) return { fenced: false, why: 'stopped while fencing' };
  }
  if (!c.current()) return { fenced: false, why: 'stopped while fencing' };
  return { fenced: true };
}
