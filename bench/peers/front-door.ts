import uWS, { type TemplatedApp, type WebSocket, type us_listen_socket } from 'uWebSockets.js';
import { Packr, Unpackr } from 'msgpackr';
import { Tokens } from '../../gateway/auth.js';
import { isAmountCents } from '../../protocol/money.js';
import { isId } from '../../protocol/ids.js';
import { TurnWrites } from '../../gateway/ws/turn-writes.js';
import type { PeerDesign, PeerOutcome } from './design.js';

/**
 * The front door every peer design sits behind: a small uWebSockets.js
 * server speaking the gateway's WebSocket bid frames (`/v1/ws?token=..&format=msgpack`,
 * `{type:'bid', auctionId, maxBid, bidId, rid}` in, `{type:'bid.result', rid, ...BidResult}`
 * or `{type:'error', rid, code, message}` out), checking the same signed
 * tokens at the upgrade. It does what a lean gateway in front of that
 * design would do and no more: no subscriptions, no notifications, no rate
 * limits. Answers that become ready in one tick leave each socket in one
 * corked write, as the gateway's do. At most `inFlightMax` bids wait for
 * their design at once; beyond that a bid is refused `unavailable` (the
 * generator counts those as not decided), so an overloaded peer sheds load
 * instead of queueing without bound.
 */
export type FrontDoorOptions = { secret: string; port?: number; inFlightMax?: number; frameBytesMax?: number };

type Socket = WebSocket<{ userId: number; binary: boolean; open: boolean }>;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export class FrontDoor {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private inFlight = 0;
  /** Answers from the design, each socket's of one turn in one write (as the gateway's are). */
  private readonly answers = new TurnWrites<Socket, Record<string, unknown>>(
    (ws, frames) => {
      for (const frame of frames) this.send(ws, frame);
    },
    (ws) => ws.getUserData().open,
  );
  /** Counters for the peer's report: decided, refused as unavailable, refused as malformed, failed in the design. */
  readonly counts = { decided: 0, unavailable: 0, invalid: 0, failed: 0 };

  private constructor(
    private readonly design: PeerDesign,
    private readonly o: Required<FrontDoorOptions>,
  ) {
    const tokens = new Tokens(o.secret, 3_600_000);
    this.app = uWS.App();
    // What the bench waits on between steps: nothing in flight.
    this.app.get('/status', (res) => {
      res
        .writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ pending: this.inFlight, ...this.counts }));
    });
    this.app.ws<{ userId: number; binary: boolean; open: boolean }>('/*', {
      maxPayloadLength: o.frameBytesMax,
      maxBackpressure: 4 * 1024 * 1024,
      idleTimeout: 0,
      upgrade: (res, req, context) => {
        const query = new URLSearchParams(req.getQuery() ?? '');
        let userId: number;
        try {
          userId = tokens.verify(query.get('token'));
        } catch (error) {
          res
            .writeStatus('401 Unauthorized')
            .end(JSON.stringify({ code: 'unauthenticated', message: (error as Error).message }));
          return;
        }
        res.upgrade(
          { userId, binary: query.get('format') === 'msgpack', open: true },
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      },
      message: (ws, message, isBinary) => this.onMessage(ws, Buffer.from(message), isBinary),
      close: (ws) => {
        ws.getUserData().open = false;
        this.answers.forget(ws);
      },
    });
  }

  static async start(design: PeerDesign, options: FrontDoorOptions): Promise<FrontDoor> {
    const door = new FrontDoor(design, { port: 0, inFlightMax: 4_096, frameBytesMax: 16 * 1024, ...options });
    await new Promise<void>((resolve, reject) =>
      door.app.listen('127.0.0.1', door.o.port, (socket) => {
        if (!socket) return reject(new Error(`front door: cannot listen on port ${door.o.port}`));
        door.listenSocket = socket;
        resolve();
      }),
    );
    return door;
  }

  get port(): number {
    return this.listenSocket ? uWS.us_socket_local_port(this.listenSocket) : 0;
  }

  get pending(): number {
    return this.inFlight;
  }

  close(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
  }

  private onMessage(ws: Socket, data: Buffer, isBinary: boolean): void {
    let m: unknown;
    try {
      m = isBinary ? unpackr.unpack(data) : JSON.parse(data.toString());
    } catch {
      return this.refuse(ws, undefined, 'invalid_request', 'the frame is not a msgpack or JSON message');
    }
    const frame = (typeof m === 'object' && m !== null ? m : {}) as Record<string, unknown>;
    const rid = typeof frame.rid === 'number' || typeof frame.rid === 'string' ? frame.rid : undefined;
    if (frame.type !== 'bid') return this.refuse(ws, rid, 'invalid_request', 'this front door takes bids only');
    const { auctionId, maxBid, bidId } = frame;
    if (!isId(auctionId) || !isId(bidId))
      return this.refuse(ws, rid, 'invalid_request', 'auctionId and bidId must be positive integers');
    if (!isAmountCents(maxBid)) return this.refuse(ws, rid, 'invalid_amount', 'maxBid must be a whole number of cents');
    if (this.inFlight >= this.o.inFlightMax) {
      this.counts.unavailable++;
      return this.send(ws, { type: 'bid.result', rid, bidId, auctionId, status: 'rejected', reason: 'unavailable' });
    }
    this.inFlight++;
    const userId = ws.getUserData().userId;
    this.design.decide({ auctionId, bidderId: userId, bidId, maxBid, at: Date.now() }).then(
      (outcome) => {
        this.inFlight--;
        this.counts.decided++;
        this.answers.queue(ws, resultFrame(rid, bidId, auctionId, outcome));
      },
      (error: unknown) => {
        this.inFlight--;
        this.counts.failed++;
        this.answers.queue(ws, {
          type: 'bid.result',
          rid,
          bidId,
          auctionId,
          status: 'rejected',
          reason: 'unavailable',
          message: String(error),
        });
      },
    );
  }

  private refuse(ws: Socket, rid: string | number | undefined, code: string, message: string): void {
    this.counts.invalid++;
    this.send(ws, { type: 'error', ...(rid === undefined ? {} : { rid }), code, message });
  }

  /** Inside a uWS callback (the socket is corked already): sent at once. */
  private send(ws: Socket, frame: Record<string, unknown>): void {
    const c = ws.getUserData();
    if (c.binary) ws.send(packr.pack(frame), true);
    else ws.send(JSON.stringify(frame), false);
  }
}

function resultFrame(rid: string | number | undefined, bidId: number, auctionId: number, o: PeerOutcome) {
  return {
    type: 'bid.result',
    ...(rid === undefined ? {} : { rid }),
    bidId,
    auctionId,
    status: o.status,
    ...(o.reason ? { reason: o.reason } : {}),
    price: o.price,
    leading: o.leading,
    endsAt: o.endsAt,
    seq: o.seq,
  };
}
