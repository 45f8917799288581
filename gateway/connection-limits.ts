import { ApiError } from './errors.js';

export type ConnectionLimitsConfig = {
  /** WebSockets open at once: from one client address, signed in as one user, and in all. */
  wsPerAddressMax: number;
  wsPerUserMax: number;
  wsMax: number;
  /** SSE streams open at once: from one client address, and in all (SSE carries no identity). */
  ssePerAddressMax: number;
  sseMax: number;
};

/**
 * Caps on long-lived connections. Each open WebSocket or SSE stream holds
 * memory and a share of every fan-out, and none needs a token, so without
 * caps one address could hold thousands of them. Counts are kept per key and
 * forgotten when they return to zero, so the maps are bounded by the number
 * of open connections. Refusals are `rate_limited` (HTTP 429 before an
 * upgrade; an error answer to an `auth` message over the limit).
 */
export class ConnectionLimits {
  private readonly wsByAddress = new Map<string, number>();
  private readonly wsByUser = new Map<number, number>();
  private readonly sseByAddress = new Map<string, number>();
  private ws = 0;
  private sse = 0;

  constructor(private readonly c: ConnectionLimitsConfig) {}

  /** Counts a WebSocket from `address` (throws `rate_limited` over a cap). Pair with `closeWebSocket`. */
  openWebSocket(address: string): void {
    if (this.ws >= this.c.wsMax) throw limited('this gateway holds as many WebSockets as it may');
    if ((this.wsByAddress.get(address) ?? 0) >= this.c.wsPerAddressMax)
      throw limited(`at most ${this.c.wsPerAddressMax} WebSockets from one address`);
    this.ws++;
    increment(this.wsByAddress, address);
  }

  closeWebSocket(address: string): void {
    this.ws--;
    decrement(this.wsByAddress, address);
  }

  /** Counts a connection signed in as `userId` (throws `rate_limited` over the cap). Pair with `signOut`. */
  signIn(userId: number): void {
    if ((this.wsByUser.get(userId) ?? 0) >= this.c.wsPerUserMax)
      throw limited(`at most ${this.c.wsPerUserMax} connections signed in as one user`);
    increment(this.wsByUser, userId);
  }

  signOut(userId: number): void {
    decrement(this.wsByUser, userId);
  }

  /** Counts an SSE stream from `address` (throws `rate_limited` over a cap). Pair with `closeStream`. */
  openStream(address: string): void {
    if (this.sse >= this.c.sseMax) throw limited('this gateway holds as many event streams as it may');
    if ((this.sseByAddress.get(address) ?? 0) >= this.c.ssePerAddressMax)
      throw limited(`at most ${this.c.ssePerAddressMax} event streams from one address`);
    this.sse++;
    increment(this.sseByAddress, address);
  }

  closeStream(address: string): void {
    this.sse--;
    decrement(this.sseByAddress, address);
  }
}

function limited(message: string): ApiError {
  return new ApiError('rate_limited', message, { retryAfterSeconds: 10 });
}

function increment<K>(counts: Map<K, number>, key: K): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function decrement<K>(counts: Map<K, number>, key: K): void {
  const left = (counts.get(key) ?? 0) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}
