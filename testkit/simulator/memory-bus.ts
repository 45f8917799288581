import type { BusPort, BusRequest } from '../../shard/ports.js';
import { Connection, never } from './network.js';
import type { Scheduler, SimNode } from './scheduler.js';

export type MemoryBusOptions = {
  /** One way of one message; drawn per message. */
  latencyMs?: () => number;
};

/** A requester's side of the bus (a NATS connection's `request`). */
export type BusClient = { request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> };

type Subscription = {
  subject: string;
  connection: Connection;
  handler: (request: BusRequest) => void;
  active: boolean;
};

/** Where a request's answer goes: the requester's side settles once, on the first answer in or the timeout. */
type Answer = (reply: Uint8Array | Error) => void;

/** An error as the NATS client raises it, with its `code` ('503' no responders, 'TIMEOUT'). */
function natsError(message: string, code: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/**
 * NATS core request-reply on subjects (exact subjects, no wildcards, no
 * queue groups): a request reaches every subscriber of its subject, the
 * first reply to reach the server wins, and no subscriber at all is an
 * immediate "no responders". The server runs as world events; handlers and
 * answers are events of the processes that get them.
 */
export class MemoryBus {
  private readonly subscriptions = new Map<string, Set<Subscription>>();
  private inboxes = 0;
  readonly latencyMs: () => number;

  constructor(
    readonly scheduler: Scheduler,
    options: MemoryBusOptions = {},
  ) {
    this.latencyMs = options.latencyMs ?? (() => 1);
  }

  /** A serving process's subscriptions, through its own connection. */
  port(node: SimNode): BusPort {
    const connection = new Connection(this.scheduler, node, this.latencyMs);
    return {
      serve: (subject, handler) => this.subscribe(subject, connection, handler),
      // Subscriptions route at once here; the answer still comes back as an event of the node (a paused one waits).
      flush: () => new Promise<void>((resolve) => this.scheduler.schedule(node, 0, resolve)),
    };
  }

  /** A requesting process's side, through its own connection. */
  client(node: SimNode): BusClient {
    const connection = new Connection(this.scheduler, node, this.latencyMs);
    return { request: (subject, data, timeoutMs) => this.request(connection, subject, data, timeoutMs) };
  }

  /** Subscribers of `subject` that would get a request now (checker access). */
  subscribers(subject: string): number {
    return this.live(subject).length;
  }

  /** The subscription takes effect at once (as after a flush), and so does its end. */
  private subscribe(
    subject: string,
    connection: Connection,
    handler: (request: BusRequest) => void,
  ): { unsubscribe(): void } {
    const subscription: Subscription = { subject, connection, handler, active: true };
    let set = this.subscriptions.get(subject);
    if (!set) this.subscriptions.set(subject, (set = new Set()));
    set.add(subscription);
    return { unsubscribe: () => this.unsubscribe(subscription) };
  }

  private unsubscribe(subscription: Subscription): void {
    subscription.active = false;
    const set = this.subscriptions.get(subscription.subject);
    set?.delete(subscription);
    if (set?.size === 0) this.subscriptions.delete(subscription.subject);
  }

  private request(connection: Connection, subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (connection.node.dead) return never();
    const sent = data.slice();
    return new Promise((resolve, reject) => {
      let settled = false;
      const cancelTimeout = this.scheduler.schedule(connection.node, timeoutMs, () => {
        settled = true;
        reject(natsError('timeout', 'TIMEOUT'));
      });
      const answer: Answer = (reply) =>
        connection.down.send(() => {
          if (settled) return;
          settled = true;
          cancelTimeout();
          if (reply instanceof Error) reject(reply);
          else resolve(reply);
        });
      connection.up.send(() => this.route(subject, sent, answer));
    });
  }

  /** At the server: hands the request to every live subscriber, or answers "no responders". */
  private route(subject: string, data: Uint8Array, answer: Answer): void {
    const subscribers = this.live(subject);
    if (subscribers.length === 0) {
      answer(natsError('no responders', '503'));
      return;
    }
    const reply = `_INBOX.${++this.inboxes}`;
    let answered = false;
    const respondOnce = (body: Uint8Array) => {
      if (answered) return;
      answered = true;
      answer(body);
    };
    for (const subscription of subscribers) this.deliver(subscription, { data: data.slice(), reply }, respondOnce);
  }

  /** Runs the handler as an event of the subscriber, unless it unsubscribed meanwhile. */
  private deliver(
    subscription: Subscription,
    message: { data: Uint8Array; reply: string },
    respondOnce: (body: Uint8Array) => void,
  ): void {
    const { connection } = subscription;
    const request: BusRequest = {
      ...message,
      respond: (body?: Uint8Array) => {
        const sent = body ? body.slice() : new Uint8Array(0);
        if (!connection.node.dead) connection.up.send(() => respondOnce(sent));
        return true;
      },
    };
    connection.down.send(() => {
      if (subscription.active) subscription.handler(request);
    });
  }

  /** Active subscriptions of live processes; dead ones are forgotten here. */
  private live(subject: string): Subscription[] {
    const set = this.subscriptions.get(subject);
    if (!set) return [];
    for (const subscription of set) if (subscription.connection.node.dead) this.unsubscribe(subscription);
    return [...set];
  }
}
