import { commandError, shardOfAuction, WIRE_LIMITS, type CommandResult, type EngineClient } from '../protocol/index.js';

type Waiting = { command: unknown; resolve: (result: CommandResult) => void };

/**
 * Routes commands to the shard that owns them, batching: every command for
 * one shard that arrives during a turn of the event loop leaves in one NATS
 * request (up to the wire's limit per request), and while
 * `requestsInFlightMax` requests to a shard await their answers, new
 * commands for it wait and leave together when one comes back (smart
 * batching: the busier the shard, the larger its batches, and each request,
 * append and reply is paid once per batch instead of once per few bids).
 * Bounded: past `pendingMax` commands waiting, new ones are answered
 * `unavailable` at once.
 */
export class CommandRouter {
  private readonly queues = new Map<number, Waiting[]>();
  private readonly inFlight = new Map<number, number>();
  private scheduled = false;
  private pending = 0;

  constructor(
    private readonly engines: EngineClient,
    private readonly pendingMax: number,
    private readonly requestsInFlightMax = 2,
  ) {}

  /** Routes by the auction id (the shard is encoded in it). */
  forAuction(auctionId: number, command: unknown): Promise<CommandResult> {
    return this.send(shardOfAuction(auctionId), command);
  }

  send(shard: number, command: unknown): Promise<CommandResult> {
    if (this.pending >= this.pendingMax) return Promise.resolve(commandError('unavailable', 'gateway overloaded'));
    this.pending++;
    return new Promise((resolve) => {
      let queue = this.queues.get(shard);
      if (!queue) this.queues.set(shard, (queue = []));
      queue.push({ command, resolve });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  get waiting(): number {
    return this.pending;
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
    while (sent < queue.length && inFlight < this.requestsInFlightMax) {
      const part = queue.slice(sent, sent + WIRE_LIMITS.requestCommandsMax);
      sent += part.length;
      inFlight++;
      void this.engines
        .send(
          shard,
          part.map((w) => w.command),
        )
        .then((results) => {
          this.pending -= part.length;
          this.inFlight.set(shard, (this.inFlight.get(shard) ?? 1) - 1);
          part.forEach((w, j) => w.resolve(results[j]));
          this.sendQueued(shard);
        });
    }
    this.inFlight.set(shard, inFlight);
    if (sent === queue.length) this.queues.delete(shard);
    else queue.splice(0, sent);
  }
}
