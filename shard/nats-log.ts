import {
  DeliverPolicy,
  JetStreamApiError,
  PubHeaders,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { ReplyInbox } from '../protocol/reply-inbox.js';
import { decodeLog, streamName, subjects, type LogBatch } from '../protocol/index.js';
import { isWrongLastSequence } from '../protocol/nats-errors.js';
import { ensureShardStream, type ShardStreamConfig } from '../protocol/shard-stream.js';
import { DeposedError, logMsgId, type LogFollower, type ShardLogPort } from './ports.js';

/**
 * One shard's JetStream stream: the source of truth. Appends carry the
 * stream-level expected last sequence (never a per-subject one), so a writer
 * that is not the latest fails instead of forking the history.
 */
export class ShardLog implements ShardLogPort {
  readonly stream: string;
  readonly subject: string;
  private inbox: ReplyInbox | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly shard: number,
  ) {
    this.stream = streamName(shard);
    this.subject = subjects.log(shard);
  }

  /**
   * A JetStream publish is a NATS request answered by the stream with a
   * PubAck (JSON); sent through one reply inbox per log rather than
   * js.publish, whose per-request errors and timers cost the engine ~4% of
   * its CPU. Same headers, same errors (JetStreamApiError by code).
   */
  private async publish(
    bytes: Uint8Array,
    msgID: string,
    lastSequence: number,
    lastMsgID: string | undefined,
    timeoutMs: number,
  ): Promise<PubAck> {
    const h = headers();
    h.set(PubHeaders.MsgIdHdr, msgID);
    h.set(PubHeaders.ExpectedLastSeqHdr, String(lastSequence));
    if (lastMsgID !== undefined) h.set(PubHeaders.ExpectedLastMsgIdHdr, lastMsgID);
    const reply = await (this.inbox ??= new ReplyInbox(this.nc)).request(this.subject, bytes, timeoutMs, h);
    const body = reply.json<PubAck & { error?: { code: number; err_code: number; description: string } }>();
    if (body.error) throw new JetStreamApiError(body.error);
    if (!body.stream) throw new Error(`shard ${this.shard}: invalid ack from JetStream`);
    return { ...body, duplicate: body.duplicate ?? false };
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
      ack = await this.publish(bytes, msgID, expectLastStreamSeq, chainsOnto, timeoutMs);
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
    return consumer.consume({ max_messages: 512 });
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
