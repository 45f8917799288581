import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamPublisher } from '../protocol/jetstream-publisher.js';
import { decodeLog, streamName, subjects, type LogBatch } from '../protocol/index.js';
import { isWrongLastSequence } from '../protocol/nats-errors.js';
import { ensureShardStream, PULL_EXPIRES_MS, type ShardStreamConfig } from '../protocol/shard-stream.js';
import { DeposedError, logMsgId, type LogFollower, type ShardLogPort } from './ports.js';

/**
 * Log batches a consumer of this process may have on their way to it, per
 * shard. A batch is up to ~330 KB (4,096 events with titles): with 512, a
 * standby catching up had up to 170 MB pending per shard, past the 64 MB a
 * NATS server lets a client owe before it cuts the connection as a slow
 * consumer, and with it every shard of the process (make bench-scale at 5M
 * auctions: "Slow Consumer Detected: MaxPending of 67108864 Exceeded" for
 * every engine, then leases lost everywhere). Sixteen is at most ~5 MB per
 * shard and still thousands of events per round trip.
 */
const FOLLOW_MESSAGES_MAX = 16;
/**
 * One shard's JetStream stream: the source of truth. Appends carry the
 * stream-level expected last sequence (never a per-subject one), so a writer
 * that is not the latest fails instead of forking the history.
 */
export class ShardLog implements ShardLogPort {
  readonly stream: string;
  readonly subject: string;
  /** Appends go through one reply inbox (protocol/jetstream-publisher.ts), not js.publish. */
  private readonly publisher: JetStreamPublisher;

  constructor(
    nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly shard: number,
  ) {
    this.stream = streamName(shard);
    this.subject = subjects.log(shard);
    this.publisher = new JetStreamPublisher(nc);
  }

  /** Opens the shard's stream (protocol/shard-stream.ts `ensureShardStream`). */
  ensure(
    wanted: ShardStreamConfig,
    replicas: number,
  ): Promise<{ config: ShardStreamConfig; lastStreamSeq: number; created: boolean }> {
    return ensureShardStream(this.jsm, wanted, replicas);
  }

  async lastStreamSeq(): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq;
  }

  /**
   * Appends one batch after `expectLastStreamSeq`; rejects with DeposedError
   * when the stream moved on. The msg id names the writer and the position,
   * so it is unique per append; JetStream answering "duplicate" would mean an
   * earlier append at that position, never a fresh one, and is an error.
   */
  async append(
    bytes: Uint8Array,
    expectLastStreamSeq: number,
    writer: string,
    timeoutMs: number,
    chainsOnto?: string,
  ): Promise<PubAck> {
    const msgID = logMsgId(this.shard, expectLastStreamSeq + 1, writer);
    let ack: PubAck;
    try {
      ack = await this.publisher.publish(this.subject, bytes, {
        msgID,
        lastSequence: expectLastStreamSeq,
        lastMsgID: chainsOnto,
        timeoutMs,
      });
    } catch (error) {
      if (isWrongLastSequence(error))
        throw new DeposedError(
          `shard ${this.shard}: stream moved past ${expectLastStreamSeq}${chainsOnto === undefined ? '' : ` (or its last message is not ${chainsOnto})`}`,
          { cause: error },
        );
      throw error;
    }
    if (ack.duplicate)
      throw new Error(`shard ${this.shard}: append ${msgID} was taken for a duplicate of stream message ${ack.seq}`);
    return ack;
  }

  /**
   * Follows the stream from after `afterStreamSeq` for as long as the caller
   * keeps reading (a replica's ordered consumer). `pending` is how many
   * messages the stream holds beyond each one.
   */
  async follow(afterStreamSeq: number): Promise<LogFollower> {
    const raw = await this.readFrom(afterStreamSeq);
    async function* messages() {
      for await (const message of raw)
        yield { streamSeq: message.seq, batch: decodeLog(message.data), pending: message.info.pending };
    }
    return { messages: messages(), stop: async () => void (await raw.close()) };
  }

  /** An ordered consumer delivering the stream from after `afterStreamSeq`. */
  private async readFrom(afterStreamSeq: number) {
    const consumer = await this.js.consumers.get(this.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: afterStreamSeq + 1,
    });
    return consumer.consume({ max_messages: FOLLOW_MESSAGES_MAX, expires: PULL_EXPIRES_MS });
  }

  /** Reads batches with stream sequence in (afterStreamSeq, toStreamSeq], in order, with their raw bytes. */
  async *read(
    afterStreamSeq: number,
    toStreamSeq: number,
  ): AsyncGenerator<{ streamSeq: number; batch: LogBatch; raw: Uint8Array }> {
    if (toStreamSeq <= afterStreamSeq) return;
    const messages = await this.readFrom(afterStreamSeq);
    try {
      for await (const message of messages) {
        yield { streamSeq: message.seq, batch: decodeLog(message.data), raw: message.data };
        if (message.seq >= toStreamSeq) break;
      }
    } finally {
      await messages.close();
    }
  }
}
