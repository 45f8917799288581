import { Tokens } from '../../gateway/auth.js';
import { Latency } from './latency.js';
import { startJob, type BidJob, type BidResult } from './worker.js';

export type BidRun = {
  latency: Latency;
  /** Decided bids (accepted or rejected by a rule) per second of the measured phase. */
  decidedPerSec: number;
  accepted: number;
  errors: Record<string, number>;
  errorSamples: Record<string, string>;
};

/**
 * Open-loop bid load through a gateway over WebSocket, on the load
 * generator's worker threads (bench/harness/worker.ts): `ratePerSec` over
 * `auctions`, bidders signed in with tokens of `tokens`' secret. Each run
 * takes bidder ids and bid ids of its own and bids above every earlier run's
 * maximums, so its bids are decided as fresh ones.
 */
export class BidJobs {
  private nextUser = 100_000;
  private nextBidId = 1;
  private runs = 0;

  constructor(
    private readonly wsUrl: string,
    private readonly tokens: Tokens,
    private readonly workers = 2,
    private readonly connections = 100,
  ) {}

  async run(auctions: number[], ratePerSec: number, warmupMs: number, durationMs: number): Promise<BidRun> {
    const perWorker = Math.max(1, Math.floor(this.connections / this.workers));
    this.runs++;
    const jobs = Array.from({ length: this.workers }, (_, w): BidJob => ({
      kind: 'bids',
      url: this.wsUrl,
      auctions,
      ratePerSec: ratePerSec / this.workers,
      warmupMs,
      durationMs,
      drainMs: 10_000,
      firstBidId: this.nextBidId + w * 50_000_000,
      maxBidBase: 2_000_000 * this.runs,
      tokens: Array.from({ length: perWorker }, () => this.tokens.mint(this.nextUser++).token),
    }));
    this.nextBidId += this.workers * 50_000_000;
    const results = await Promise.all(jobs.map((job) => startJob<BidResult>(job).result));
    const latency = new Latency();
    const errors: Record<string, number> = {};
    const errorSamples: Record<string, string> = {};
    for (const r of results) {
      latency.add(Latency.decode(r.latency));
      for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n;
      Object.assign(errorSamples, r.errorSamples);
    }
    return {
      latency,
      decidedPerSec: Math.round((results.reduce((a, r) => a + r.answeredInWindow, 0) * 1_000) / durationMs),
      accepted: results.reduce((a, r) => a + r.accepted, 0),
      errors,
      errorSamples,
    };
  }
}
