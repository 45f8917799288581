import type { HttpRequest } from 'uWebSockets.js';
import type { LiveState } from '../../protocol/public.js';
import { ApiError, asApiError } from '../errors.js';
import type { SubscriptionCount } from '../fanout/counts.js';
import type { Guards } from '../guards.js';
import type { Exchange } from '../http/exchange.js';
import type { LiveFeed } from '../live/feed.js';
import type { Metrics } from '../metrics.js';
import { stateFrame } from '../public-shapes.js';
import * as v from '../validate.js';
import { resumeVersion, SSE_CONFIG } from './config.js';

type SseStream = { ex: Exchange; lastVersion: number; congested: boolean };

export type SseDeps = { guards: Guards; live: LiveFeed; metrics: Metrics; subscriptions: SubscriptionCount };

/**
 * Server-sent events: `GET /v1/auctions/:id/events` streams `event: state`
 * with `id: <version>` and the `auction.state` frame as data, every version
 * newer than the client's Last-Event-ID. A congested stream gets only the
 * latest state once writable again; a comment keeps idle streams open.
 */
export class SseStreams {
  private readonly byAuction = new Map<number, Set<SseStream>>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly d: SseDeps) {
    this.heartbeat = setInterval(() => this.keepAlive(), SSE_CONFIG.heartbeatMs);
  }

  /** Answers the request with a stream (or an error); `req` is read before this returns. */
  open(ex: Exchange, req: HttpRequest): void {
    let auctionId: number;
    let resumeFrom: number;
    try {
      auctionId = v.idParam(req.getParameter(0), 'auction id');
      resumeFrom = resumeVersion(
        req.getHeader('last-event-id') || new URLSearchParams(req.getQuery() ?? '').get('lastEventId') || '',
      );
      this.d.guards.limitReads(ex.address, 1);
      this.d.guards.connections.openStream(ex.address);
    } catch (error) {
      this.d.guards.refuse(ex, asApiError(error));
      return;
    }
    // The stream counts against its address from now until the client goes away or is refused.
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.d.guards.connections.closeStream(ex.address);
    };
    ex.whenAborted(release);
    const stream: SseStream = { ex, lastVersion: resumeFrom, congested: false };
    this.d.live.watch(auctionId).then(
      (state) => {
        if (!state) {
          release();
          ex.error(new ApiError('not_found', `no auction ${auctionId}`));
          return;
        }
        if (ex.aborted) {
          this.d.live.unwatch(auctionId);
          return;
        }
        this.add(auctionId, stream);
        ex.done = true;
        ex.res.cork(() => {
          ex.writeHead(200, SSE_CONFIG.headers);
          ex.res.write(`retry: ${SSE_CONFIG.retryMs}\n\n`);
        });
        // Resuming with the latest version already seen: nothing to send until it changes.
        this.write(stream, this.d.live.current(auctionId) ?? state);
      },
      (error: unknown) => {
        release();
        ex.error(asApiError(error));
      },
    );
  }

  /** A new state of a watched auction, to each of its streams. */
  publish(state: LiveState): void {
    const streams = this.byAuction.get(state.auctionId);
    if (streams) for (const s of streams) this.write(s, state);
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const streams of this.byAuction.values()) for (const s of streams) if (!s.ex.aborted) s.ex.res.close();
  }

  private add(auctionId: number, stream: SseStream): void {
    let streams = this.byAuction.get(auctionId);
    if (!streams) this.byAuction.set(auctionId, (streams = new Set()));
    streams.add(stream);
    this.d.metrics.sseStreams.inc();
    this.d.subscriptions.added();
    stream.ex.whenAborted(() => {
      streams.delete(stream);
      if (streams.size === 0) this.byAuction.delete(auctionId);
      this.d.live.unwatch(auctionId);
      this.d.metrics.sseStreams.dec();
      this.d.subscriptions.removed();
    });
  }

  /** Writes a state if newer than the last one written; a congested stream gets only the latest once it drains. */
  private write(stream: SseStream, state: LiveState): void {
    if (stream.ex.aborted || state.version <= stream.lastVersion) return;
    if (stream.congested) {
      this.d.metrics.backpressureDrops.inc();
      return;
    }
    stream.lastVersion = state.version;
    const res = stream.ex.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(`id: ${state.version}\nevent: state\ndata: ${JSON.stringify(stateFrame(state))}\n\n`);
    });
    if (!ok) {
      stream.congested = true;
      res.onWritable(() => {
        stream.congested = false;
        const latest = this.d.live.current(state.auctionId);
        if (latest) this.write(stream, latest);
        return true;
      });
    }
  }

  private keepAlive(): void {
    for (const streams of this.byAuction.values()) {
      for (const s of streams)
        if (!s.ex.aborted && !s.congested) s.ex.res.cork(() => s.ex.res.write(': keep-alive\n\n'));
    }
  }
}
