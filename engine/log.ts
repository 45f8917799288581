import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import { decodeLog, streamName, subjects, type LogBatch } from '../protocol/index.js';
import { createMissing, isStreamNotFound, upgradeStream, type StreamUpgrade } from '../protocol/provisioning.js';
import { DeposedError, logMsgId, type LogFollower, type ShardLogPort, type ShardStreamConfig } from '../shard/ports.js';

/** JetStream's "wrong last msg ID" (Nats-Expected-Last-Msg-Id failed); nats.js names no constant for it. */
const STREAM_WRONG_LAST_MSG_ID = 10_070;

/** A publish refused by one of its expectations (last sequence, or last msg id): someone else appended first. */
export function isWrongLastSequence(error: unknown): boolean {
  return error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown || error.code === STREAM_WRONG_LAST_MSG_ID);
}

/**
 * What followers without consumers need of a shard's stream: direct gets
 * (reads by sequence) and a RePublish of every stored batch to
 * `auction.logged.<n>` (gateway/stream-follower.ts). A rejected append is
 * never stored, so never re-published.
 */
export const shardFollowSettings = (shard: number) => ({
  allow_direct: true as const,
  republish: { src: subjects.log(shard), dest: subjects.logged(shard) },
});

/** A shard stream's configuration: the one definition provisioning and engines (on a server without users) create. */
export function shardStreamConfig(shard: number, recorded: ShardStreamConfig, replicas: number) {
  return {
    name: streamName(shard),
    subjects: [subjects.log(shard)],
    num_replicas: replicas,
    description: JSON.stringify(recorded),
    duplicate_window: 120_000_000_000, // 2 min, in ns
    ...shardFollowSettings(shard),
  };
}

/**
 * One shard's JetStream stream: the source of truth. Appends carry the
 * stream-level expected last sequence (never a per-subject one), so a writer
 * that is not the latest fails instead of forking the history.
 */
export class ShardLog implements ShardLogPort {
  readonly stream: string;
  readonly subject: string;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly shard: number,
  ) {
    this.stream = streamName(shard);
    this.subject = subjects.log(shard);
  }

  /**
   * Opens the shard's stream and returns the shard configuration it records:
   * whoever creates the stream fixes it (the admin's provisioning,
   * ctl/provision.ts, or on a server without users the first engine), and
   * every engine and replica of the shard adopts it, so they all decide with
   * the same capacities. A missing stream is created only where this NATS
   * user may (NotProvisionedError otherwise); `created` says whether it was.
   */
  async ensure(wanted: ShardStreamConfig, replicas: number): Promise<{ config: ShardStreamConfig; lastStreamSeq: number; created: boolean }> {
    try {
      const info = await this.jsm.streams.info(this.stream);
      return { config: parseDescription(info.config.description, wanted), lastStreamSeq: info.state.last_seq, created: false };
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
    }
    await createMissing(`stream ${this.stream}`, () => this.jsm.streams.add(shardStreamConfig(this.shard, wanted, replicas)));
    return { config: wanted, lastStreamSeq: 0, created: true };
  }

  /** Gives the existing stream the settings followers need (the admin's provisioning; protocol/provisioning.ts). */
  async upgrade(): Promise<StreamUpgrade> {
    return upgradeStream(this.jsm, await this.jsm.streams.info(this.stream), shardFollowSettings(this.shard));
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
  async append(bytes: Uint8Array, expectLastStreamSeq: number, writer: string, timeoutMs: number, chainsOnto?: string): Promise<PubAck> {
    const msgID = logMsgId(this.shard, expectLastStreamSeq + 1, writer);
    const expect = chainsOnto === undefined ? { lastSequence: expectLastStreamSeq } : { lastSequence: expectLastStreamSeq, lastMsgID: chainsOnto };
    let ack: PubAck;
    try {
      ack = await this.js.publish(this.subject, bytes, { expect, msgID, timeout: timeoutMs, retries: 0 });
    } catch (error) {
      if (isWrongLastSequence(error)) throw new DeposedError(`shard ${this.shard}: stream moved past ${expectLastStreamSeq}${chainsOnto === undefined ? '' : ` (or its last message is not ${chainsOnto})`}`, { cause: error });
      throw error;
    }
    if (ack.duplicate) throw new Error(`shard ${this.shard}: append ${msgID} was taken for a duplicate of stream message ${ack.seq}`);
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
      for await (const message of raw) yield { streamSeq: message.seq, batch: decodeLog(message.data), pending: message.info.pending };
    }
    return { messages: messages(), stop: async () => void (await raw.close()) };
  }

  /** An ordered consumer delivering the stream from after `afterStreamSeq`. */
  private async readFrom(afterStreamSeq: number) {
    const consumer = await this.js.consumers.get(this.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterStreamSeq + 1 });
    return consumer.consume({ max_messages: 512 });
  }

  /** Reads batches with stream sequence in (afterStreamSeq, toStreamSeq], in order, with their raw bytes. */
  async *read(afterStreamSeq: number, toStreamSeq: number): AsyncGenerator<{ streamSeq: number; batch: LogBatch; raw: Uint8Array }> {
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

function parseDescription(description: string | undefined, fallback: ShardStreamConfig): ShardStreamConfig {
  try {
    const parsed = JSON.parse(description ?? '') as Partial<ShardStreamConfig>;
    if (Number.isInteger(parsed.auctionsMax) && Number.isInteger(parsed.idempotencyEntriesMax) && parsed.shard === fallback.shard) {
      return parsed as ShardStreamConfig;
    }
  } catch {
    // A stream made by something else: fall through.
  }
  throw new Error(`stream ${streamName(fallback.shard)} exists but does not record a shard configuration`);
}
