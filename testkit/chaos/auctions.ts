import type { Random } from '../simulator/random.js';

/** An auction the run created, with the value its bidders put on it (their caps are drawn around it). */
export type BoardAuction = { id: number; value: number; startsAt: number; endsAt: number; createdAt: number };

const CREATE_TIMEOUT_MS = 3_000;
const CREATE_ATTEMPTS_MAX = 20;

/**
 * The auctions of a run, created by one seller over HTTP (`POST /v1/auctions`)
 * through whichever gateway answers: a creation that fails (a gateway down,
 * no primary yet) is sent again to the next gateway. A creation is not
 * idempotent, so an answer lost after the engine decided it leaves an
 * auction nobody here knows of: harmless, the checkers read the streams.
 */
export class AuctionBoard {
  private readonly auctions = new Map<number, BoardAuction>();
  private gateway = 0;
  failedAttempts = 0;

  constructor(
    private readonly gateways: string[],
    private readonly sellerToken: string,
    private readonly random: Random,
  ) {}

  ids(): number[] {
    return [...this.auctions.keys()];
  }

  all(): BoardAuction[] {
    return [...this.auctions.values()];
  }

  valueOf(id: number): number {
    return this.auctions.get(id)?.value ?? 0;
  }

  /**
   * Creates an auction opening `startsInMs` from now and ending `runsMs`
   * after that (soft close `softCloseSeconds`); null when no gateway
   * created it in CREATE_ATTEMPTS_MAX attempts.
   */
  async create(startsInMs: number, runsMs: number, softCloseSeconds: number): Promise<BoardAuction | null> {
    const value = this.random.int(20, 400) * 100;
    const startingPrice = this.random.int(1, 20) * 50;
    for (let attempt = 0; attempt < CREATE_ATTEMPTS_MAX; attempt++) {
      const now = Date.now();
      const startsAt = startsInMs > 0 ? now + startsInMs : 0;
      const endsAt = (startsAt || now) + runsMs;
      const base = this.gateways[this.gateway];
      try {
        const response = await fetch(`${base}/v1/auctions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.sellerToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            title: `lot ${this.auctions.size + 1}`,
            startingPrice,
            startsAt,
            endsAt,
            softCloseSeconds,
          }),
          signal: AbortSignal.timeout(CREATE_TIMEOUT_MS),
        });
        if (response.status === 201) {
          const body = (await response.json()) as { id: number; startsAt: number; endsAt: number };
          const auction = { id: body.id, value, startsAt: body.startsAt, endsAt: body.endsAt, createdAt: now };
          this.auctions.set(auction.id, auction);
          return auction;
        }
        await response.body?.cancel();
      } catch {
        // Refused, reset or timed out: the next gateway.
      }
      this.failedAttempts++;
      this.gateway = (this.gateway + 1) % this.gateways.length;
      await new Promise((resolve) => setTimeout(resolve, 100 + attempt * 50));
    }
    return null;
  }
}
