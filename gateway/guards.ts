import type { HttpRequest } from 'uWebSockets.js';
import type { GatewayConfig } from './config.js';
import { ConnectionLimits } from './connection-limits.js';
import { ApiError } from './errors.js';
import { FramingGuard, type Exchange } from './http/exchange.js';
import type { Metrics } from './metrics.js';
import { KeyedLimiter } from './rate-limit.js';

/**
 * What every transport checks before doing work for a client: request
 * framing, the per-user, per-address and read budgets, one password hash at
 * a time per address, and the caps on long-lived connections. Refusals are
 * counted (`gateway_rate_limited_total`, `gateway_errors_total`).
 */
export class Guards {
  readonly connections: ConnectionLimits;
  private readonly framing = new FramingGuard();
  private readonly userLimiter: KeyedLimiter<number>;
  private readonly addressLimiter: KeyedLimiter<string>;
  private readonly readLimiter: KeyedLimiter<string>;
  /** Addresses with a password hash in progress (bounded by the hashes in flight and queued). */
  private readonly hashing = new Set<string>();

  constructor(
    c: GatewayConfig,
    private readonly metrics: Metrics,
  ) {
    this.userLimiter = new KeyedLimiter(c.userCommandsPerSec, c.userCommandsPerSec * 2);
    this.addressLimiter = new KeyedLimiter(c.addressAuthPerSec, c.addressAuthPerSec * 2);
    // A reader over its budget gets its rate, not nothing: refused reads are not charged.
    this.readLimiter = new KeyedLimiter(c.addressReadsPerSec, c.addressReadsPerSec * 2, 1_000_000, Date.now, false);
    this.connections = new ConnectionLimits(c);
  }

  /** Forgets full buckets (periodically). */
  sweep(): void {
    this.userLimiter.sweep();
    this.addressLimiter.sweep();
    this.readLimiter.sweep();
  }

  /** A request whose length is ambiguous is answered 400 and its connection closed (nothing after it can be trusted). */
  refuseFraming(ex: Exchange, req: HttpRequest): boolean {
    const error = this.framing.check(req, ex.address);
    if (!error) return false;
    this.refuse(ex, error, true);
    return true;
  }

  /** An error answer given before any handler ran (framing, SSE and upgrade refusals), counted like the WebSocket's. */
  refuse(ex: Exchange, error: ApiError, closeConnection = false): void {
    this.metrics.errors.inc({ code: error.code });
    ex.error(error, closeConnection);
  }

  /** Charges reads to the client address's budget; `rate_limited` when it is spent. */
  limitReads(address: string, cost: number): void {
    if (cost === 0 || this.readLimiter.take(address, cost)) return;
    this.metrics.rateLimited.inc({ scope: 'reads' });
    throw new ApiError('rate_limited', 'too many reads from this address', { retryAfterSeconds: 1 });
  }

  /**
   * One registration or sign-in at a time per client address: each costs a
   * password hash (~0.4 s of a core), and the hashing queue is shared by
   * everyone, so one address must not be able to fill it.
   */
  async hashingFor<T>(address: string, work: () => Promise<T>): Promise<T> {
    if (this.hashing.has(address)) {
      this.metrics.rateLimited.inc({ scope: 'address' });
      throw new ApiError('rate_limited', 'one sign-in or registration at a time from an address', {
        retryAfterSeconds: 1,
      });
    }
    this.hashing.add(address);
    try {
      return await work();
    } finally {
      this.hashing.delete(address);
    }
  }

  limitAddress(address: string): void {
    if (!this.addressLimiter.take(address)) {
      this.metrics.rateLimited.inc({ scope: 'address' });
      throw new ApiError('rate_limited', 'too many logins or registrations from this address', {
        retryAfterSeconds: 1,
      });
    }
  }

  /** One command of the user's budget; false (counted) when it is spent. */
  userAllowed(userId: number): boolean {
    if (this.userLimiter.take(userId)) return true;
    this.metrics.rateLimited.inc({ scope: 'user' });
    return false;
  }

  limitUser(userId: number): void {
    if (!this.userAllowed(userId)) throw new ApiError('rate_limited', undefined, { retryAfterSeconds: 1 });
  }
}
