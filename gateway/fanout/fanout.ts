import type { TemplatedApp } from 'uWebSockets.js';
import type { LiveState, Notification } from '../../protocol/public.js';
import type { Metrics } from '../metrics.js';
import { notificationFrame, stateFrame } from '../public-shapes.js';
import type { SseStreams } from '../sse/streams.js';
import { clientPackr } from './codec.js';
import { auctionTopic, userTopic } from './topics.js';

/**
 * Fan-out of live states and notifications (called by LiveFeed and
 * NotificationCenter): each message is encoded once per format and
 * published once per topic (`app.publish`, which uWS writes to every
 * subscribed socket, dropping it for a socket over its backpressure limit),
 * and a state is also written to the auction's SSE streams.
 */
export class Fanout {
  constructor(
    private readonly app: TemplatedApp,
    private readonly sse: SseStreams,
    private readonly metrics: Metrics,
  ) {}

  /** New states of watched auctions, once per turn of the event loop: one message per auction and format. */
  publishStates(states: LiveState[]): void {
    for (const state of states) {
      const message = stateFrame(state);
      const text = auctionTopic(state.auctionId, 't');
      const binary = auctionTopic(state.auctionId, 'b');
      if (this.app.numSubscribers(text) > 0) this.app.publish(text, JSON.stringify(message), false);
      if (this.app.numSubscribers(binary) > 0) this.app.publish(binary, clientPackr.pack(message), true);
      this.sse.publish(state);
      this.metrics.stateUpdates.inc();
    }
  }

  deliverNotification(userId: number, notification: Notification): void {
    const message = notificationFrame(notification);
    const text = userTopic(userId, 't');
    const binary = userTopic(userId, 'b');
    let pushed = false;
    if (this.app.numSubscribers(text) > 0) pushed = this.app.publish(text, JSON.stringify(message), false) || pushed;
    if (this.app.numSubscribers(binary) > 0)
      pushed = this.app.publish(binary, clientPackr.pack(message), true) || pushed;
    if (pushed) this.metrics.notificationsPushed.inc();
  }
}
