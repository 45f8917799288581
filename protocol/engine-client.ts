import type { NatsConnection } from '@nats-io/transport-node';
import { shardOfAuction } from './ids.js';
import { commandError, decode, encode, type CommandReply, type CommandResult } from './wire.js';
import { adminSubjects, subjects } from './names.js';
import { ReplyInbox } from './reply-inbox.js';
import { isBinaryBatch } from './binary/header.js';
import { decodeResultBatch, encodeCommandBatch } from './binary/command-format.js';

/**
 * Sends commands to the engine that owns each shard. A timeout, a missing
 * responder or a broken reply answers `unavailable` for every command of the
 * request: the outcome is unknown, and a retry with the same bidId is safe.
 */
export class EngineClient {
  /** Made on the first command: one reply subscription for all of them. */
  private inbox: ReplyInbox | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 2_000,
  ) {}

  /** `admin`: the operators' subject, the only one where close and cancel are taken (NATS admin rights). */
  async send(shard: number, commands: unknown[], admin = false): Promise<CommandResult[]> {
    return (await this.request(shard, commands, admin)).results;
  }

  /**
   * As `send`, with the engine's queue time of the request when it says (the gateways' admission budget);
   * `timeoutMs` overrides the client's timeout for this request.
   */
  async request(shard: number, commands: unknown[], admin = false, timeoutMs = this.timeoutMs): Promise<CommandReply> {
    try {
      // The operators' subject is rare: nats.js's request, which also reports a publish refused by
      // permissions at once (the reply inbox would only time out).
      const reply = admin
        ? await this.nc.request(adminSubjects.engine(shard), encode({ commands }), { timeout: timeoutMs })
        : await (this.inbox ??= new ReplyInbox(this.nc)).request(
            subjects.commands(shard),
            encodeCommandBatch(commands),
            timeoutMs,
          );
      // Binary batches on the command subject (protocol/binary/command-format.ts); msgpack on the operators'.
      const body = (
        isBinaryBatch(reply.data) ? decodeResultBatch(reply.data) : decode(reply.data)
      ) as Partial<CommandReply> & {
        error?: CommandResult;
      };
      if (body?.error) return { results: commands.map(() => body.error!) };
      if (!Array.isArray(body?.results) || body.results.length !== commands.length) {
        return { results: commands.map(() => commandError('unavailable', 'malformed reply from the engine')) };
      }
      return typeof body.queuedMs === 'number'
        ? { results: body.results, queuedMs: body.queuedMs }
        : { results: body.results };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { results: commands.map(() => commandError('unavailable', `engine unavailable: ${message}`)) };
    }
  }

  async sendOne(shard: number, command: unknown, admin = false): Promise<CommandResult> {
    return (await this.send(shard, [command], admin))[0];
  }

  /** Routes by auction id: the shard is encoded in it. */
  bid(auctionId: number, bidderId: number, bidId: number, maxBid: number): Promise<CommandResult> {
    return this.sendOne(shardOfAuction(auctionId), { type: 'bid', auctionId, bidderId, bidId, maxBid });
  }

  /** A control request (`{op, ...}`, protocol/operations.ts ControlOperations) to a shard's primary; tests send malformed ones. */
  async control<T>(shard: number, request: Record<string, unknown>): Promise<T> {
    const reply = await this.nc.request(subjects.control(shard), encode(request), { timeout: this.timeoutMs });
    return decode(reply.data) as T;
  }
}
