import type { NatsConnection } from '@nats-io/transport-node';
import { decode, encode } from '../../protocol/index.js';
import { auditSubject } from '../../protocol/names.js';
import type { AuditQueryOperations, ErrorReply, ReplyOf, RequestOf } from '../../protocol/operations.js';
import { ApiError } from '../errors.js';

export type AuditRequest = RequestOf<AuditQueryOperations>;
export type AuditReply<R extends AuditRequest> = ReplyOf<AuditQueryOperations, R['op']>;

const AUDIT_TIMEOUT_MS = 2_000;

/** Requests to a shard's read model (`auditSubject(shard)`, answered by its audit process from SQLite). */
export class AuditClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = AUDIT_TIMEOUT_MS,
  ) {}

  /** The read model's answer as it came (its reply, or `{error}`); rejects when it does not answer. */
  async ask<R extends AuditRequest>(shard: number, request: R): Promise<AuditReply<R> | ErrorReply> {
    const msg = await this.nc.request(auditSubject(shard), encode(request), { timeout: this.timeoutMs });
    return decode(msg.data) as AuditReply<R> | ErrorReply;
  }

  /** Its reply; ApiError `unavailable` (503, retry is safe) when it does not answer. */
  async query<R extends AuditRequest>(shard: number, request: R): Promise<AuditReply<R>> {
    let reply: AuditReply<R> | ErrorReply;
    try {
      reply = await this.ask(shard, request);
    } catch (error) {
      throw new ApiError('unavailable', `the read model of shard ${shard} did not answer`, { cause: error });
    }
    // The read model's own checks (a bad cursor, status or limit) are the client's to fix; anything
    // else is an internal failure whose text (SQLite's) is for the log only.
    const { error } = reply as Partial<ErrorReply>;
    if (error?.code === 'invalid_request') throw new ApiError('invalid_request', error.message);
    // Its read workers all full (audit/read-pool.ts): nothing was wrong with the query; later it is answered.
    if (error?.code === 'overloaded') throw new ApiError('unavailable', `the read model of shard ${shard} is busy`);
    if (error) throw new Error(`read model of shard ${shard}: ${error.code}: ${error.message}`);
    return reply as AuditReply<R>;
  }
}
