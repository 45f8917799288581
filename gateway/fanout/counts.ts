import type { Metrics } from '../metrics.js';

/** Auction subscriptions held by WebSocket and SSE clients of this gateway (`gateway_subscriptions`, `auctionctl status`). */
export class SubscriptionCount {
  private count = 0;

  constructor(private readonly metrics: Metrics) {}

  get value(): number {
    return this.count;
  }

  added(): void {
    this.metrics.subscriptions.set(++this.count);
  }

  removed(n = 1): void {
    this.count -= n;
    this.metrics.subscriptions.set(this.count);
  }
}
