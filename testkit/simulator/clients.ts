import { decode, encode, isRetrySafe, subjects, type Command, type CommandResult } from '../../protocol/index.js';
import type { Random } from './random.js';

/** A final answer a client received: what it will hold the system to. */
export type Answer = { client: number; command: Command; result: CommandResult; at: number };

export type ClientWorld = {
  random: Random;
  now(): number;
  sleep(ms: number): Promise<void>;
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Auctions known to exist, to bid on. */
  auctions(): readonly number[];
  onAnswer(answer: Answer): void;
  running(): boolean;
};

const SHARD = 0;
const RETRY_BACKOFF_MS_MAX = 200;

/**
 * A bidder as the gateway would act for it: one command at a time, each
 * retried with the same bidId after `unavailable`, no responders or a
 * timeout, and after `overloaded` once its `retryAfterMs` has passed (a
 * shed command was never recorded: the checker sees that its retry counts
 * once), until it gets a decided answer (accepted or rejected). The
 * answers are what the checker holds the log to.
 */
export class SimClient {
  private nextBidId = 1;
  readonly bidderId: number;
  retries = 0;

  constructor(
    private readonly id: number,
    private readonly world: ClientWorld,
    private readonly requestTimeoutMs: number,
  ) {
    this.bidderId = 1_000 + id;
  }

  async run(): Promise<void> {
    const { random } = this.world;
    while (this.world.running()) {
      await this.world.sleep(random.int(5, 60));
      if (!this.world.running()) return;
      await this.send(this.nextCommand());
    }
  }

  /** Sends one command until it is decided (or the run ends). */
  async send(command: Command): Promise<CommandResult | null> {
    for (let attempt = 1; this.world.running(); attempt++) {
      const result = await this.attempt(command);
      if (result && result.status !== 'error') {
        this.world.onAnswer({ client: this.id, command, result, at: this.world.now() });
        return result;
      }
      if (result && !isRetrySafe(result.code)) {
        this.world.onAnswer({ client: this.id, command, result, at: this.world.now() });
        return result;
      }
      this.retries++;
      const backoff = this.world.random.int(10, RETRY_BACKOFF_MS_MAX);
      await this.world.sleep(Math.max(backoff, Math.min(result?.retryAfterMs ?? 0, 5_000)));
    }
    return null;
  }

  private async attempt(command: Command): Promise<CommandResult | null> {
    try {
      const reply = decode(
        await this.world.request(subjects.commands(SHARD), encode({ commands: [command] }), this.requestTimeoutMs),
      ) as { results?: CommandResult[] };
      return reply.results?.[0] ?? null;
    } catch {
      return null; // no responders or no answer in time: outcome unknown, retry the same command
    }
  }

  private nextCommand(): Command {
    const { random } = this.world;
    const auctions = this.world.auctions();
    if (auctions.length === 0 || random.chance(0.04)) {
      const now = this.world.now();
      return {
        type: 'create',
        sellerId: 50 + this.id,
        startingPrice: random.int(1, 50) * 100,
        reservePrice: random.chance(0.3) ? random.int(50, 200) * 100 : 0,
        startsAt: random.chance(0.2) ? now + random.int(100, 2_000) : 0,
        endsAt: now + random.int(2_000, 20_000),
        softCloseSeconds: random.int(0, 3),
      };
    }
    return {
      type: 'bid',
      auctionId: random.pick(auctions),
      bidderId: this.bidderId,
      bidId: this.nextBidId++,
      maxBid: random.int(1, 400) * 100,
    };
  }
}
