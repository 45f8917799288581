/** The simulated network: ordered one-way wires and request/answer connections between nodes, over the scheduler. */
import type { Cancel } from '../../shard/ports.js';
import type { Scheduler, SimNode } from './scheduler.js';

/**
 * One direction of a connection (TCP): messages arrive in the order they
 * were sent, each after a latency drawn when it is sent. Deliveries are
 * events of the receiving node, so a paused receiver gets them on resume and
 * a dead one never.
 */
export class Wire {
  private lastArrival = -Infinity;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly to: SimNode | null,
    private readonly latencyMs: () => number,
  ) {}

  send(fn: () => void): Cancel {
    const now = this.scheduler.now;
    const arrival = Math.max(now + Math.max(0, this.latencyMs()), this.lastArrival);
    this.lastArrival = arrival;
    return this.scheduler.schedule(this.to, arrival - now, fn);
  }
}

/** What the network does to one request: it is answered, lost on the way in, or served with its answer lost. */
export type RequestFate = 'answered' | 'lost' | 'unanswered';

/** A never-settling promise: what a dead process is left waiting on. */
export const never = <T>(): Promise<T> => new Promise<T>(() => {});

/**
 * A process's connection to a server that runs as world events (JetStream,
 * KV): requests go up one wire, answers come down the other, so both keep
 * their order. A dead process sends nothing.
 */
export class Connection {
  readonly up: Wire;
  readonly down: Wire;

  constructor(
    readonly scheduler: Scheduler,
    readonly node: SimNode,
    latencyMs: () => number,
  ) {
    this.up = new Wire(scheduler, null, latencyMs);
    this.down = new Wire(scheduler, node, latencyMs);
  }

  /**
   * Runs `serve` at the server and settles with its value or what it threw,
   * a round trip later. With `timeoutMs`, the caller's clock rejects with
   * Error('timeout') that long after the call unless the answer came first;
   * the fate decides whether the request is served and answered at all.
   */
  ask<T>(serve: () => T, timeoutMs?: number, fate: RequestFate = 'answered'): Promise<T> {
    if (this.node.dead) return never();
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const cancelTimeout =
        timeoutMs === undefined
          ? () => {}
          : this.scheduler.schedule(this.node, timeoutMs, () => {
              settled = true;
              reject(new Error('timeout'));
            });
      this.up.send(() => {
        if (fate === 'lost') return;
        const answer = serveToAnswer(serve, resolve, reject);
        if (fate === 'unanswered') return;
        this.down.send(() => {
          if (settled) return;
          cancelTimeout();
          answer();
        });
      });
    });
  }
}

/** Runs `serve` now and returns how to deliver its outcome later. */
function serveToAnswer<T>(serve: () => T, resolve: (value: T) => void, reject: (error: unknown) => void): () => void {
  try {
    const value = serve();
    return () => resolve(value);
  } catch (error) {
    return () => reject(error);
  }
}
