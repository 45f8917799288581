import { commandError, shardOfAuction, WIRE_LIMITS, type CommandResult, type EngineClient } from '../protocol/index.js';

type Waiting = { command: unknown; resolve: (result: CommandResult) => void };

/**
 * Routes commands to the shard that owns them, batching: every command for
 * one shard that arrives during a turn of the event loop leaves in one NATS
 * request (up to the wire's limit per request), so a busy gateway sends a
 * few large requests instead of many small ones. Bounded: past
 * `pendingMax` commands waiting, new ones are answered `unavailable` at once.
 */
export class CommandRouter {
  private readonly queues = new Map<number, Waiting[]>();
  private scheduled = false;
  private pending = 0;

  constructor(
    private readonly engines: EngineClient,
    private readonly pendingMax: number,
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
    for (const [shard, queue] of this.queues) {
      this.queues.delete(shard);
      for (let i = 0; i < queue.length; i += WIRE_LIMITS.requestCommandsMax) {
        const part = queue.slice(i, i + WIRE_LIMITS.requestCommandsMax);
        void this.engines
          .send(
            shard,
            part.map((w) => w.command),
          )
          .then((results) => {
            this.pending -= part.length;
            part.forEach((w, j) => w.resolve(results[j]));
          });
      }
    }
  }
}
