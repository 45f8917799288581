import {
  createInbox,
  NoRespondersError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';

type Waiter = { subject: string; deadline: number; resolve: (msg: Msg) => void; reject: (error: Error) => void };

/** How often the deadlines of waiting requests are checked (a timeout fires at most this late). */
const SWEEP_MS = 50;

/**
 * Request/reply on the hot paths (gateway -> engine command batches, engine ->
 * JetStream appends) over one reply subscription, told apart by a counter
 * in the reply subject. nats.js's `request` builds two Error objects with
 * stack traces, a timer and a random token for every request (about 4% of
 * a busy engine's or gateway's CPU, profiled); here a request is a map
 * entry, and one sweep every 50 ms ends the ones past their deadline with
 * nats.js's own TimeoutError. A reply of status 503 without data is
 * NATS saying nobody listens: NoRespondersError, as nats.js would say.
 * Replies must come from the connection's own inbox prefix (the NATS
 * permissions of each role allow only that one).
 */
export class ReplyInbox {
  private readonly prefix: string;
  private readonly subscription: Subscription;
  private readonly waiting = new Map<number, Waiter>();
  private next = 0;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly nc: NatsConnection) {
    // The connection's configured inbox prefix (nats.js keeps it on its options; not in its typings).
    const inboxPrefix = (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.prefix = createInbox(inboxPrefix);
    this.subscription = nc.subscribe(`${this.prefix}.*`, { callback: (error, msg) => this.onReply(error, msg) });
  }

  /** Requests in flight (bounded by the callers: the router's and the pipeline's own limits). */
  get size(): number {
    return this.waiting.size;
  }

  request(subject: string, data: Uint8Array, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    const token = ++this.next;
    return new Promise<Msg>((resolve, reject) => {
      if (this.nc.isClosed()) {
        reject(new Error('connection closed'));
        return;
      }
      this.waiting.set(token, { subject, deadline: performance.now() + timeoutMs, resolve, reject });
      try {
        this.nc.publish(subject, data, { reply: `${this.prefix}.${token}`, headers });
      } catch (error) {
        this.waiting.delete(token);
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (!this.sweeper) {
        this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
        this.sweeper.unref();
      }
    });
  }

  /** Ends every waiting request (the connection is closing). */
  close(): void {
    this.subscription.unsubscribe();
    for (const waiter of this.waiting.values()) waiter.reject(new Error('connection closed'));
    this.waiting.clear();
    this.stopSweeping();
  }

  private onReply(error: Error | null, msg: Msg): void {
    if (error) {
      // The subscription itself failed (permissions, connection closed): nothing can be answered any more.
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
      this.stopSweeping();
      return;
    }
    const token = Number(msg.subject.slice(this.prefix.length + 1));
    const waiter = this.waiting.get(token);
    if (!waiter) return; // timed out already
    this.waiting.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) waiter.reject(new NoRespondersError(waiter.subject));
    else waiter.resolve(msg);
    if (this.waiting.size === 0) this.stopSweeping();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [token, waiter] of this.waiting) {
      if (waiter.deadline > now) continue;
      this.waiting.delete(token);
      waiter.reject(new TimeoutError());
    }
    if (this.waiting.size === 0) this.stopSweeping();
  }

  private stopSweeping(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
