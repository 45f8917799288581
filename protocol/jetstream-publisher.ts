import { JetStreamApiError, PubHeaders, type PubAck } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { ReplyInbox } from './reply-inbox.js';

export type PublishOptions = {
  msgID?: string;
  /** Nats-Expected-Last-Sequence: the stream's last sequence must be this. */
  lastSequence?: number;
  /** Nats-Expected-Last-Msg-Id: the stream's last message must have this id. */
  lastMsgID?: string;
  timeoutMs: number;
};

type AckBody = PubAck & { error?: { code: number; err_code: number; description: string } };

/**
 * JetStream publishes on the hot paths (a shard log's appends, the audit's
 * notifications). A publish is a NATS request answered by the stream with a
 * PubAck (JSON); sent through one reply inbox (protocol/reply-inbox.ts) rather
 * than js.publish, whose two Error objects and timer per publish cost the
 * engine ~4% and the audit ~14% of their CPU (profiled). Same headers, same
 * errors (JetStreamApiError by JetStream's code, nats.js's TimeoutError and
 * NoRespondersError), so callers sort failures as before (protocol/nats-errors.ts).
 */
export class JetStreamPublisher {
  private inbox: ReplyInbox | null = null;

  constructor(private readonly nc: NatsConnection) {}

  async publish(subject: string, data: Uint8Array, options: PublishOptions): Promise<PubAck> {
    const h = headers();
    if (options.msgID !== undefined) h.set(PubHeaders.MsgIdHdr, options.msgID);
    if (options.lastSequence !== undefined) h.set(PubHeaders.ExpectedLastSeqHdr, String(options.lastSequence));
    if (options.lastMsgID !== undefined) h.set(PubHeaders.ExpectedLastMsgIdHdr, options.lastMsgID);
    const reply = await (this.inbox ??= new ReplyInbox(this.nc)).request(subject, data, options.timeoutMs, h);
    const body = reply.json<AckBody>();
    if (body.error) throw new JetStreamApiError(body.error);
    if (!body.stream) throw new Error(`invalid ack from JetStream for ${subject}`);
    return { ...body, duplicate: body.duplicate ?? false };
  }
}
