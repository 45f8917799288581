import { decodeLog, type LogBatch } from '../../protocol/index.js';
import { DeposedError, logMsgId, type LogFollower, type LoggedBatch, type ShardLogPort } from '../../shard/ports.js';
import { type ShardStreamConfig } from '../../protocol/shard-stream.js';
import { Connection, type Wire } from './network.js';
import type { Scheduler, SimNode } from './scheduler.js';

/** JetStream's duplicate window on shard streams (engine/log.ts: duplicate_window 2 min). */
export const DUPLICATE_WINDOW_MS = 120_000;

/** Messages a follower may have on its way or unread (engine/log.ts consumes with max_messages 512). */
export const FOLLOW_WINDOW = 512;

/** What the fault hook makes of one append: answered, lost on the way in, or stored with its answer lost. */
/** `refused`: at once, not applied (the stream has no leader: NATS answers "no responders"). */
export type AppendFault = 'ok' | 'lost-timeout' | 'landed-timeout' | 'refused';

/** What the fault hook makes of a read request (info, opening a consumer): answered, or "no responders". */
export type ReadFault = 'ok' | 'error';

/** One stored stream message, as the checker sees it. */
export type StoredMessage = {
  readonly streamSeq: number;
  readonly bytes: Uint8Array;
  readonly batch: LogBatch;
  readonly msgId: string;
  readonly storedAt: number;
};

export type MemoryLogOptions = {
  shard: number;
  /** What the stream records about the shard (its description field): `ensure` returns it. */
  config: ShardStreamConfig;
  /** One way of one message; drawn per message. */
  latencyMs?: () => number;
  appendFault?: () => AppendFault;
  readFault?: () => ReadFault;
};

/**
 * One shard's JetStream stream, shared by all its copies: sequences from 1
 * without gaps, the stream-level expected-sequence fence and msg-id
 * deduplication as engine/log.ts relies on them. The stream itself runs as
 * world events (it is never paused or killed); each copy reaches it through
 * its own port, over wires with latency.
 */
export class MemoryLog {
  private readonly messages: StoredMessage[] = [];
  /** Msg ids stored within the duplicate window, to the sequence they were stored at. */
  private readonly recentIds = new Map<string, number>();
  /** Index of the oldest message whose msg id is still in `recentIds`. */
  private windowStart = 0;
  private readonly followers = new Set<FollowerStream>();
  readonly shard: number;
  readonly latencyMs: () => number;
  readonly appendFault: () => AppendFault;
  readonly readFault: () => ReadFault;

  constructor(
    readonly scheduler: Scheduler,
    private readonly options: MemoryLogOptions,
  ) {
    this.shard = options.shard;
    this.latencyMs = options.latencyMs ?? (() => 1);
    this.appendFault = options.appendFault ?? (() => 'ok');
    this.readFault = options.readFault ?? (() => 'ok');
  }

  /** A copy's view of the stream, through its own connection. */
  port(node: SimNode): ShardLogPort {
    return new MemoryLogPort(this, node);
  }

  get config(): ShardStreamConfig {
    return { ...this.options.config };
  }

  /** The stream's last sequence (0 when empty). */
  get lastSeq(): number {
    return this.messages.length;
  }

  /** Every stored message in order (checker access; not a copy). */
  entries(): readonly StoredMessage[] {
    return this.messages;
  }

  /** The stored message at `streamSeq`. */
  message(streamSeq: number): StoredMessage {
    const message = this.messages[streamSeq - 1];
    if (!message) throw new Error(`stream message ${streamSeq} is not stored (last ${this.lastSeq})`);
    return message;
  }

  /** Deletes the consumers of `node` (all when omitted): their iterators throw at their next read. */
  killConsumers(node?: SimNode): void {
    for (const follower of [...this.followers]) if (!node || follower.node === node) follower.delete();
  }

  /**
   * The server's handling of a publish: a msg id seen within the duplicate
   * window is a duplicate (checked first, as JetStream does), then the
   * expected last sequence and the expected last msg id (when given) fence
   * out a writer that is not the latest.
   */
  receive(bytes: Uint8Array, expectLastStreamSeq: number, msgId: string, chainsOnto?: string): number {
    this.forgetOldIds();
    const earlier = this.recentIds.get(msgId);
    if (earlier !== undefined)
      throw new Error(`shard ${this.shard}: append ${msgId} was taken for a duplicate of stream message ${earlier}`);
    if (this.lastSeq !== expectLastStreamSeq)
      throw new DeposedError(`shard ${this.shard}: stream moved past ${expectLastStreamSeq}`);
    const lastMsgId = this.messages.at(-1)?.msgId ?? '';
    if (chainsOnto !== undefined && lastMsgId !== chainsOnto)
      throw new DeposedError(`shard ${this.shard}: last message is ${lastMsgId}, not ${chainsOnto}`);
    return this.store(bytes, msgId);
  }

  /** Starts a consumer at the server, registered to hear of every message stored; the caller pumps its first ones. */
  openFollower(node: SimNode, down: Wire, afterStreamSeq: number): FollowerStream {
    const follower = new FollowerStream(this, node, down, afterStreamSeq);
    this.followers.add(follower);
    return follower;
  }

  forgetFollower(follower: FollowerStream): void {
    this.followers.delete(follower);
  }

  private store(bytes: Uint8Array, msgId: string): number {
    const streamSeq = this.messages.length + 1;
    this.messages.push({ streamSeq, bytes, batch: decodeLog(bytes), msgId, storedAt: this.scheduler.now });
    this.recentIds.set(msgId, streamSeq);
    for (const follower of [...this.followers]) follower.pump();
    return streamSeq;
  }

  private forgetOldIds(): void {
    const horizon = this.scheduler.now - DUPLICATE_WINDOW_MS;
    for (
      ;
      this.windowStart < this.messages.length && this.messages[this.windowStart].storedAt <= horizon;
      this.windowStart++
    ) {
      this.recentIds.delete(this.messages[this.windowStart].msgId);
    }
  }
}

/** How an append's fault plays out on the network. */
const APPEND_FATE = { ok: 'answered', 'lost-timeout': 'lost', 'landed-timeout': 'unanswered' } as const;

/** One copy's connection to the stream: requests go up a wire to the server, answers come down one. */
class MemoryLogPort implements ShardLogPort {
  private readonly connection: Connection;

  constructor(
    private readonly log: MemoryLog,
    private readonly node: SimNode,
  ) {
    this.connection = new Connection(log.scheduler, node, log.latencyMs);
  }

  ensure(
    wanted: ShardStreamConfig,
    _replicas: number,
  ): Promise<{ config: ShardStreamConfig; lastStreamSeq: number; created: boolean }> {
    return this.connection.ask(() => {
      const config = this.log.config;
      if (config.shard !== wanted.shard)
        throw new Error(`stream of shard ${config.shard} does not record shard ${wanted.shard}`);
      return { config, lastStreamSeq: this.log.lastSeq, created: false };
    });
  }

  lastStreamSeq(): Promise<number> {
    const fault = this.log.readFault();
    return this.connection.ask(() => {
      if (fault === 'error') throw new Error('no responders');
      return this.log.lastSeq;
    });
  }

  /**
   * Publishes with the expected last sequence and the msg id engine/log.ts
   * uses. The timeout runs on the caller's clock from the call; an answer
   * after it is ignored, as the client library does.
   */
  append(
    bytes: Uint8Array,
    expectLastStreamSeq: number,
    writer: string,
    timeoutMs: number,
    chainsOnto?: string,
  ): Promise<{ seq: number }> {
    const msgId = logMsgId(this.log.shard, expectLastStreamSeq + 1, writer);
    const fault = this.log.appendFault();
    if (fault === 'refused')
      return this.connection.ask(() => {
        throw new Error(`no responders: 'auction.log.${this.log.shard}'`);
      });
    const fate = APPEND_FATE[fault];
    const sent = bytes.slice(); // what went on the wire: the caller may reuse its buffer
    return this.connection.ask(
      () => ({ seq: this.log.receive(sent, expectLastStreamSeq, msgId, chainsOnto) }),
      timeoutMs,
      fate,
    );
  }

  /** Opens a consumer at the server; its first messages may overtake the answer, and wait in the iterator. */
  follow(afterStreamSeq: number): Promise<LogFollower> {
    const fault = this.log.readFault();
    return this.connection.ask(() => {
      if (fault === 'error') throw new Error('no responders');
      const follower = this.log.openFollower(this.node, this.connection.down, afterStreamSeq);
      follower.pump();
      return follower.handle();
    });
  }

  /** A consumer from after `afterStreamSeq`, read until `toStreamSeq` (waiting for it if not stored yet), then stopped. */
  async *read(afterStreamSeq: number, toStreamSeq: number): AsyncGenerator<LoggedBatch> {
    if (toStreamSeq <= afterStreamSeq) return;
    const follower = await this.follow(afterStreamSeq);
    try {
      for await (const { streamSeq, batch } of follower.messages) {
        yield { streamSeq, batch };
        if (streamSeq >= toStreamSeq) break;
      }
    } finally {
      await follower.stop();
    }
  }
}

type Delivered = { streamSeq: number; pending: number };

/**
 * A consumer of the stream and the iterator over it. The server side pushes
 * messages down the copy's wire, at most FOLLOW_WINDOW beyond what the
 * reader took; the reader side keeps only their sequences (the bytes stay
 * in the log) and decodes each as it is read, as a real client would.
 */
class FollowerStream implements AsyncIterator<LoggedBatch & { pending: number }> {
  /** Server side: the last sequence pushed, the last the reader took, and whether the consumer is gone. */
  private sent: number;
  private taken: number;
  private closed = false;
  /** Reader side: arrived and not read yet; how the iterator ended; a read waiting for a message. */
  private readonly arrived: Delivered[] = [];
  private ended: 'stopped' | 'deleted' | null = null;
  private waiting: {
    resolve(result: IteratorResult<LoggedBatch & { pending: number }>): void;
    reject(error: Error): void;
  } | null = null;

  constructor(
    private readonly log: MemoryLog,
    readonly node: SimNode,
    private readonly down: Wire,
    afterStreamSeq: number,
  ) {
    this.sent = afterStreamSeq;
    this.taken = afterStreamSeq;
  }

  handle(): LogFollower {
    return { messages: { [Symbol.asyncIterator]: () => this }, stop: () => this.stop() };
  }

  /** Server side: pushes what is stored and fits in the window. */
  pump(): void {
    if (this.closed) return;
    if (this.node.dead) {
      this.close();
      return;
    }
    while (this.sent < this.log.lastSeq && this.sent - this.taken < FOLLOW_WINDOW) {
      const delivered = { streamSeq: ++this.sent, pending: this.log.lastSeq - this.sent };
      this.down.send(() => this.arrive(delivered));
    }
  }

  /** Server side: the consumer is deleted; the reader learns it after what is already on the wire. */
  delete(): void {
    if (this.closed) return;
    this.close();
    this.down.send(() => this.end('deleted'));
  }

  next(): Promise<IteratorResult<LoggedBatch & { pending: number }>> {
    if (this.ended === 'deleted') return Promise.reject(new Error('consumer deleted'));
    if (this.ended === 'stopped') return Promise.resolve({ done: true, value: undefined });
    if (this.waiting) return Promise.reject(new Error('a log follower is read by one loop at a time'));
    if (this.arrived.length > 0) return Promise.resolve(this.take());
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /** A for-await loop that breaks stops the consumer. */
  async return(): Promise<IteratorResult<LoggedBatch & { pending: number }>> {
    await this.stop();
    return { done: true, value: undefined };
  }

  /** Ends the iterator (a waiting read finishes as done) and the consumer. */
  stop(): Promise<void> {
    this.close();
    this.end('stopped');
    return Promise.resolve();
  }

  private arrive(delivered: Delivered): void {
    if (this.ended) return;
    this.arrived.push(delivered);
    const waiting = this.waiting;
    if (!waiting) return;
    this.waiting = null;
    waiting.resolve(this.take());
  }

  private take(): IteratorResult<LoggedBatch & { pending: number }> {
    const { streamSeq, pending } = this.arrived.shift() as Delivered;
    this.taken = streamSeq;
    this.pump();
    return { done: false, value: { streamSeq, batch: decodeLog(this.log.message(streamSeq).bytes), pending } };
  }

  private end(how: 'stopped' | 'deleted'): void {
    if (this.ended) return;
    this.ended = how;
    this.arrived.length = 0;
    const waiting = this.waiting;
    this.waiting = null;
    if (!waiting) return;
    if (how === 'deleted') waiting.reject(new Error('consumer deleted'));
    else waiting.resolve({ done: true, value: undefined });
  }

  private close(): void {
    this.closed = true;
    this.log.forgetFollower(this);
  }
}
