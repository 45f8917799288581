import {
  commandError,
  isRetrySafe,
  shardOfAuction,
  WIRE_LIMITS,
  type CommandReply,
  type CommandResult,
  type EngineClient,
} from '../protocol/index.js';
import { ShardBudget, type AdmissionOptions } from './admission.js';

/**
 * Requests to one shard in flight at most when each is full (WIRE_LIMITS.requestCommandsMax
 * commands): past `requestsInFlightMax`, only full requests leave. Under overload this
 * gateway's event loop turns grow long (every frame read must at least be answered), and a
 * shard's throughput is what leaves per turn; full requests lose nothing of smart batching.
 * As many as the engine pipelines appends by default (--batches-in-flight-max 8).
 */
export const FULL_REQUESTS_IN_FLIGHT_MAX = 8;

type Waiting = { command: unknown; resolve: (result: CommandResult) => void; queuedAt: number };

/** A request to a shard awaiting its answer; `resent` once a new primary is being sent the same commands. */
type Flight = {
  commands: unknown[];
  done: boolean;
  resent: Promise<void> | null;
  finish: (reply: CommandReply) => void;
};

/**
 * A fence lands in the stream a moment before the new primary takes the
 * command subject (it serves once its fence is durable), and an old primary
 * that is paused still holds it: a copy sent in that moment reaches only the
 * old one and is never answered. So copies go with a short deadline of their
 * own, again and again (each one harmless, by bidId), until one is decided
 * or RESEND_ATTEMPTS_MAX were sent; a copy that finds no responder at all is
 * sent again after RESEND_RETRY_MS.
 */
const RESEND_TIMEOUT_MS = 250;
const RESEND_RETRY_MS = 25;
const RESEND_ATTEMPTS_MAX = 8;

/** Whether a reply decided nothing (a timeout, no responder, a deposed or shedding engine): another may still. */
const decidedNothing = (reply: CommandReply) => reply.results.every((r) => r.status === 'error' && isRetrySafe(r.code));

/** Only bids are sent twice: a bidId makes the second one harmless (the engine answers it from the first). */
const allBids = (commands: unknown[]) => commands.every((c) => (c as { type?: unknown }).type === 'bid');

/** What the router reports (the gateway's metrics). */
export interface RouterObserver {
  /** One answer: how long its commands waited here before leaving, at the engine (when it said), the budget after. */
  answered(answer: { shard: number; waitedHereMs: number; engineQueuedMs: number | undefined; budget: number }): void;
  shed(shard: number): void;
  /** A new primary's fence made `requests` requests in flight to the shard go again. */
  resent(shard: number, requests: number): void;
}

export type RouterOptions = {
  /** Commands waiting in this gateway for all shards; past it every command is answered `unavailable`. */
  pendingMax: number;
  requestsInFlightMax: number;
  admission: AdmissionOptions;
  observer?: RouterObserver;
  /**
   * How long this gateway's event loop ran late within `[from, to]` (ms on
   * performance.now(); gateway/saturation.ts): taken out of the round trips
   * the budgets measure.
   */
  lateWithin?: (from: number, to: number) => number;
};

/**
 * Routes commands to the shard that owns them, batching: every command for
 * one shard that arrives during a turn of the event loop leaves in one NATS
 * request (up to the wire's limit per request), and while
 * `requestsInFlightMax` requests to a shard await their answers, new
 * commands for it wait and leave together when one comes back (smart
 * batching: the busier the shard, the larger its batches, and each request,
 * append and reply is paid once per batch instead of once per few bids);
 * full requests may also leave past that bound (FULL_REQUESTS_IN_FLIGHT_MAX).
 * Bids past the shard's admission budget (gateway/admission.ts) are shed at
 * once with `overloaded` and a `retryAfterMs`, never sent. Bounded: past
 * `pendingMax` commands waiting, new ones are answered `unavailable` at once.
 */
export class CommandRouter {
  private readonly queues = new Map<number, Waiting[]>();
  private readonly inFlight = new Map<number, number>();
  private readonly budgets = new Map<number, ShardBudget>();
  private readonly flights = new Map<number, Set<Flight>>();
  private scheduled = false;
  private pending = 0;

  constructor(
    private readonly engines: EngineClient,
    private readonly options: RouterOptions,
  ) {}

  /** Routes a bid by its auction id (the shard is encoded in it); sheddable. */
  bid(auctionId: number, command: unknown): Promise<CommandResult> {
    return this.send(shardOfAuction(auctionId), command, true);
  }

  /** `sheddable`: past the shard's budget the command is answered `overloaded` instead of queued. */
  send(shard: number, command: unknown, sheddable = false): Promise<CommandResult> {
    if (this.pending >= this.options.pendingMax)
      return Promise.resolve(commandError('unavailable', 'gateway overloaded'));
    const budget = this.budgetOf(shard);
    if (!sheddable) budget.take();
    else if (!budget.admit()) {
      this.options.observer?.shed(shard);
      return Promise.resolve({
        ...commandError('overloaded', 'shard overloaded: nothing was recorded'),
        retryAfterMs: budget.retryAfterMs(),
      });
    }
    this.pending++;
    return new Promise((resolve) => {
      let queue = this.queues.get(shard);
      if (!queue) this.queues.set(shard, (queue = []));
      queue.push({ command, resolve, queuedAt: performance.now() });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * A new primary fenced the shard's log. Requests in flight may sit with the
   * old one (paused, cut off, dead) until their timeout, though the shard
   * serves again: each one made only of bids is sent again at once, to
   * whoever serves now, and answered by whichever reply decides first. Safe
   * because the fence ends the old primary's appends: a bid it logged before
   * is answered by the new one from its idempotency table, one it did not is
   * decided once, by the new one. Creations are never sent twice (no key).
   */
  primaryChanged(shard: number): number {
    let requests = 0;
    for (const flight of this.flights.get(shard) ?? []) {
      if (flight.resent || !allBids(flight.commands)) continue;
      flight.resent = this.resend(shard, flight);
      requests++;
    }
    if (requests > 0) this.options.observer?.resent(shard, requests);
    return requests;
  }

  private async resend(shard: number, flight: Flight): Promise<void> {
    for (let attempt = 1; !flight.done; attempt++) {
      const sentAt = performance.now();
      const reply = await this.engines.request(shard, flight.commands, false, RESEND_TIMEOUT_MS);
      if (!decidedNothing(reply)) return flight.finish(reply);
      if (attempt === RESEND_ATTEMPTS_MAX) return;
      // No responder (answered at once): wait a moment; a timeout has waited already.
      if (performance.now() - sentAt < RESEND_RETRY_MS)
        await new Promise((resolve) => setTimeout(resolve, RESEND_RETRY_MS));
    }
  }

  get waiting(): number {
    return this.pending;
  }

  /** Each shard's admission budget as it stands (metrics). */
  budgetViews(): ({ shard: number } & ShardBudget['view'])[] {
    return [...this.budgets].map(([shard, budget]) => ({ shard, ...budget.view }));
  }

  private budgetOf(shard: number): ShardBudget {
    let budget = this.budgets.get(shard);
    if (!budget) this.budgets.set(shard, (budget = new ShardBudget(this.options.admission)));
    return budget;
  }

  private flush(): void {
    this.scheduled = false;
    for (const shard of this.queues.keys()) this.sendQueued(shard);
  }

  /** Sends what waits for the shard, as far as its in-flight bound allows. */
  private sendQueued(shard: number): void {
    const queue = this.queues.get(shard);
    if (!queue) return;
    let inFlight = this.inFlight.get(shard) ?? 0;
    let sent = 0;
    const mayLeave = (waiting: number) =>
      inFlight < this.options.requestsInFlightMax ||
      (waiting >= WIRE_LIMITS.requestCommandsMax && inFlight < FULL_REQUESTS_IN_FLIGHT_MAX);
    while (sent < queue.length && mayLeave(queue.length - sent)) {
      const part = queue.slice(sent, sent + WIRE_LIMITS.requestCommandsMax);
      sent += part.length;
      inFlight++;
      const leftAt = performance.now();
      const commands = part.map((w) => w.command);
      let flights = this.flights.get(shard);
      if (!flights) this.flights.set(shard, (flights = new Set()));
      const flight: Flight = {
        commands,
        done: false,
        resent: null,
        finish: ({ results, queuedMs }) => {
          if (flight.done) return;
          flight.done = true;
          flights.delete(flight);
          this.pending -= part.length;
          this.inFlight.set(shard, (this.inFlight.get(shard) ?? 1) - 1);
          const budget = this.budgetOf(shard);
          const now = performance.now();
          // The answer may have waited for this event loop too: that is this gateway's own lag, not the
          // shard's pipe, and counting it would grow the budget with the very saturation it should shed.
          const roundTripMs = Math.max(0, now - leftAt - (this.options.lateWithin?.(leftAt, now) ?? 0));
          budget.onAnswered(part.length, now, roundTripMs, queuedMs, this.queues.has(shard));
          this.options.observer?.answered({
            shard,
            waitedHereMs: leftAt - part[0].queuedAt,
            engineQueuedMs: queuedMs,
            budget: budget.limit,
          });
          part.forEach((w, j) => w.resolve(results[j]));
          this.sendQueued(shard);
        },
      };
      flights.add(flight);
      void this.engines.request(shard, commands).then((reply) => {
        // Lost with the old primary: the copy sent to the new one answers instead.
        if (flight.resent && decidedNothing(reply)) void flight.resent.then(() => flight.finish(reply));
        else flight.finish(reply);
      });
    }
    this.inFlight.set(shard, inFlight);
    if (sent === queue.length) this.queues.delete(shard);
    else queue.splice(0, sent);
  }
}
