import WebSocket from 'ws';
import { incrementAt, isRetrySafe } from '../../protocol/index.js';
import type { BidResult, LiveState } from '../../protocol/public.js';
import type { Random } from '../simulator/random.js';
import type { AuctionBoard } from './auctions.js';

/** A bid as one client lived it: first sent, finally decided (or never, if the run ended first). */
export type BidRecord = {
  client: number;
  userId: number;
  auctionId: number;
  bidId: number;
  maxBid: number;
  sentAt: number;
  decidedAt: number | null;
  attempts: number;
  /** When each attempt ended and how (timeout, closed, unavailable, overloaded, a gateway's index on connect failure). */
  trail: string[];
  /** The decided answer (accepted, or rejected for a reason that is not "send again"). */
  result: BidResult | null;
  /** An error frame answered instead of a result (a valid bid must never get one). */
  error: string | null;
};

/** A notification as the client received it; `key` names what caused it, as the checker expects it. */
export type SeenNotification = { id: number; kind: string; auctionId: number; eventSeq: number };

export type ClientOptions = {
  id: number;
  userId: number;
  token: string;
  /** WebSocket URLs of every gateway; the client moves to the next one when its gateway fails it. */
  gateways: string[];
  /** The loopback source address of its connections (the gateway limits sign-ins per address). */
  localAddress: string;
  random: Random;
  board: AuctionBoard;
  /** No answer to a request within this long: the gateway is taken as gone and the client moves on. */
  requestTimeoutMs: number;
  /** The same for the WebSocket handshake and the sign-in, answered in milliseconds by a gateway that can serve. */
  connectTimeoutMs: number;
  /** Called after every state or notification the client takes in (the run's waits wake on it). */
  onChange: () => void;
};

type Pending = { socket: WebSocket; resolve: (frame: Frame | null) => void; timer: NodeJS.Timeout };
type Frame = Record<string, unknown> & { type: string };

const ACK_EVERY_MS = 1_000;
const RECONNECT_DELAY_MS = { min: 50, max: 250 };
const RESUBSCRIBE_DELAY_MS = { min: 500, max: 1_000 };
const UNAVAILABLE_DELAY_MS = { min: 20, max: 100 };
/**
 * A request left behind on a gateway that did not answer in time is still
 * awaited this long (past the gateway's own 2 s command timeout), and its
 * connection kept open as long: a slow gateway may still answer first.
 */
const LINGER_MS = 2_500;

/**
 * A bidder and watcher over WebSocket, as a careful application would be:
 * it watches every auction on the board (keeping the newest state of each),
 * bids on open ones now and then up to a cap of its own, retries a bid with
 * the same bidId after `unavailable`/`overloaded` (after `retryAfterMs`), a
 * timeout or a dropped connection (then on the next gateway) until it is
 * decided, and acknowledges its notifications as they come. Everything it
 * saw is kept for the checkers; nothing it does waits on a timer except its
 * own pacing, retry delays and the request deadline.
 */
export class ChaosClient {
  readonly bids: BidRecord[] = [];
  /** Newest state seen of each auction (by version). */
  readonly states = new Map<number, LiveState>();
  readonly notifications = new Map<string, SeenNotification>();
  reconnects = 0;
  /** Subscriptions the gateway refused for now and this client asked for again, by the refusal's message. */
  readonly resubscribes = new Map<string, number>();
  private socket: WebSocket | null = null;
  private connecting: Promise<WebSocket | null> | null = null;
  private gateway: number;
  private nextRid = 1;
  private nextBidId = 1;
  private readonly pending = new Map<number, Pending>();
  private subscribed = new Set<number>();
  private ackedUpTo = 0;
  private seenUpTo = 0;
  private running = false;
  /** Set by `close`: until then the client always reconnects (a watcher must not miss the final states). */
  private closed = false;
  private ackTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> = Promise.resolve();
  private readonly caps = new Map<number, number>();

  constructor(private readonly o: ClientOptions) {
    this.gateway = o.id % o.gateways.length;
  }

  start(): void {
    this.running = true;
    this.ackTimer = setInterval(() => this.ack(), ACK_EVERY_MS);
    this.loop = this.run();
  }

  /** Stops bidding; the bid in progress is still driven to its decision (or to `deadline`). */
  async stopBidding(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Drops the connection and opens a new one (unacknowledged notifications come again). */
  async reconnect(): Promise<void> {
    this.drop();
    await this.connection();
  }

  /** Subscribes the current connection to auctions on the board it does not watch yet. */
  watchBoard(): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const fresh = this.o.board.ids().filter((id) => !this.subscribed.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) this.subscribed.add(id);
    socket.send(JSON.stringify({ type: 'subscribe', auctionIds: fresh }));
  }

  close(): void {
    this.running = false;
    this.closed = true;
    if (this.ackTimer) clearInterval(this.ackTimer);
    this.ack();
    this.drop();
  }

  private async run(): Promise<void> {
    const { random } = this.o;
    while (this.running) {
      await sleep(random.int(100, 600));
      if (!this.running) break;
      if (!(await this.connection())) continue;
      this.watchBoard();
      const open = [...this.states.values()].filter((s) => s.status === 'open');
      if (open.length === 0) continue;
      const state = random.pick(open);
      const cap = this.capFor(state.auctionId);
      const step = incrementAt(state.price);
      // Mostly a bid that can lead; sometimes one below the next step (rejected bid_too_low) or above the cap.
      const maxBid = Math.min(cap, state.price + step * random.int(0, 4) + random.int(0, step));
      if (maxBid <= 0) continue;
      await this.bid(state.auctionId, maxBid);
    }
  }

  /** Each client values each auction differently: bidding on it stops once its price passes this. */
  private capFor(auctionId: number): number {
    let cap = this.caps.get(auctionId);
    if (cap === undefined) {
      cap = Math.round((this.o.board.valueOf(auctionId) * this.o.random.int(50, 150)) / 100);
      this.caps.set(auctionId, cap);
    }
    return cap;
  }

  /** One bid, sent until decided; every attempt carries the same bidId. */
  private async bid(auctionId: number, maxBid: number): Promise<void> {
    const record: BidRecord = {
      client: this.o.id,
      userId: this.o.userId,
      auctionId,
      bidId: this.nextBidId++,
      maxBid,
      sentAt: Date.now(),
      decidedAt: null,
      attempts: 0,
      trail: [],
      result: null,
      error: null,
    };
    this.bids.push(record);
    // After the run stops, a bid in progress still gets up to this long to be decided.
    const deadline = () => this.running || Date.now() - record.sentAt < 60_000;
    // Attempts a gateway did not answer in time still count if they are decided first (a hedge, safe by bidId):
    // every wait below also ends when one of them is.
    let decidedLate: (frame: Frame) => void = () => undefined;
    const late = new Promise<Frame>((resolve) => (decidedLate = resolve));
    const orLate = <T>(p: Promise<T>) => Promise.race([p, late]);
    let answer: Frame | null;
    while (deadline()) {
      const socket = await orLate(this.connection());
      if (socket !== null && !(socket instanceof WebSocket)) {
        answer = socket;
      } else if (!socket) {
        // Refused, or no handshake in time: `open` has moved on to the next gateway already.
        const early = await orLate(sleep(this.o.random.int(RECONNECT_DELAY_MS.min, RECONNECT_DELAY_MS.max)));
        if (!early) continue;
        answer = early as Frame;
      } else {
        record.attempts++;
        const via = this.gateway;
        const attempt = this.request(socket, { type: 'bid', auctionId, maxBid, bidId: record.bidId }, LINGER_MS);
        answer = await this.firstAnswer(attempt, late);
        const took = `g${via} +${Date.now() - record.sentAt}`;
        if (!answer || answer.type === 'error' || (answer.status === 'rejected' && isRetrySafe(String(answer.reason))))
          record.trail.push(`${took} ${answer ? String(answer.code ?? answer.reason) : 'no answer'}`);
        if (!answer) {
          // No answer in time, or the connection dropped: this gateway is not serving; try the next one, and keep
          // listening to this one a while.
          void attempt.then((frame) => frame && isDecided(frame) && decidedLate(frame));
          this.moveOn(true);
          const early = await orLate(sleep(this.o.random.int(RECONNECT_DELAY_MS.min, RECONNECT_DELAY_MS.max)));
          if (!early) continue;
          answer = early as Frame;
        }
      }
      if (answer.type === 'error') {
        if (isRetrySafe(String(answer.code))) {
          await sleep(this.o.random.int(UNAVAILABLE_DELAY_MS.min, UNAVAILABLE_DELAY_MS.max));
          continue;
        }
        record.error = `${String(answer.code)}: ${String(answer.message)}`;
        record.decidedAt = Date.now();
        return;
      }
      const result = answer as unknown as BidResult & { type: string; rid?: number };
      if (result.status === 'rejected' && result.reason && isRetrySafe(result.reason)) {
        const delay = result.retryAfterMs ?? this.o.random.int(UNAVAILABLE_DELAY_MS.min, UNAVAILABLE_DELAY_MS.max);
        await sleep(delay);
        continue;
      }
      const { type: _type, rid: _rid, ...decided } = result;
      record.result = decided;
      record.decidedAt = Date.now();
      return;
    }
  }

  /**
   * The answer to `attempt` (null if none within the request deadline, or if
   * its connection dropped), unless an earlier attempt is decided first (`late`).
   */
  private firstAnswer(attempt: Promise<Frame | null>, late: Promise<Frame>): Promise<Frame | null> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (frame: Frame | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(frame);
      };
      const timer = setTimeout(() => finish(null), this.o.requestTimeoutMs);
      void attempt.then(finish);
      void late.then(finish);
    });
  }

  /** Sends with a fresh rid; the answer, or null after the request deadline or if the connection drops. */
  private request(
    socket: WebSocket,
    message: Record<string, unknown>,
    timeoutMs = this.o.requestTimeoutMs,
  ): Promise<Frame | null> {
    const rid = this.nextRid++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        resolve(null);
      }, timeoutMs);
      this.pending.set(rid, { socket, resolve, timer });
      socket.send(JSON.stringify({ ...message, rid }));
    });
  }

  /** To the next gateway; `linger`: the current connection stays open LINGER_MS for the answers it still owes. */
  private moveOn(linger = false): void {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      if (linger) setTimeout(() => this.drop(socket), LINGER_MS);
      else this.drop(socket);
    }
    this.gateway = (this.gateway + 1) % this.o.gateways.length;
    // While bidding, the bid loop connects again at once; after it stopped, watching must go on by itself. (A
    // timer here while bidding raced the loop's own reconnects: their failures moved the client back and forth.)
    if (!this.closed && !this.running)
      setTimeout(() => void this.connection(), this.o.random.int(RECONNECT_DELAY_MS.min, RECONNECT_DELAY_MS.max));
  }

  /** Closes a connection (the current one by default); what it still owed is answered null. */
  private drop(socket = this.socket): void {
    if (!socket) return;
    if (this.socket === socket) this.socket = null;
    socket.terminate();
    for (const [rid, p] of this.pending) {
      if (p.socket !== socket) continue;
      clearTimeout(p.timer);
      p.resolve(null);
      this.pending.delete(rid);
    }
  }

  /** The open, signed-in connection (opening one if needed), or null if the gateway would not have it now. */
  private connection(): Promise<WebSocket | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return Promise.resolve(this.socket);
    if (!this.connecting)
      this.connecting = this.open().finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  private async open(): Promise<WebSocket | null> {
    const url = this.o.gateways[this.gateway];
    const socket = new WebSocket(url, { localAddress: this.o.localAddress, handshakeTimeout: this.o.connectTimeoutMs });
    const opened = await new Promise<boolean>((resolve) => {
      socket.once('open', () => resolve(true));
      socket.once('error', () => resolve(false));
      socket.once('unexpected-response', () => resolve(false));
    });
    if (!opened) {
      socket.terminate();
      this.moveOn();
      return null;
    }
    socket.on('error', () => undefined);
    socket.on('message', (data: Buffer) => this.receive(JSON.parse(data.toString()) as Frame));
    socket.on('close', () => {
      const current = this.socket === socket;
      this.drop(socket);
      if (!current) return;
      // A watcher reconnects by itself: it must not miss the states that come meanwhile.
      if (!this.closed)
        setTimeout(() => void this.connection(), this.o.random.int(RECONNECT_DELAY_MS.min, RECONNECT_DELAY_MS.max));
    });
    this.socket = socket;
    this.reconnects++;
    this.subscribed = new Set();
    const auth = await this.request(socket, { type: 'auth', token: this.o.token }, this.o.connectTimeoutMs);
    if (!auth || auth.type !== 'ok') {
      this.moveOn();
      return null;
    }
    this.watchBoard();
    return socket;
  }

  private receive(frame: Frame): void {
    if (typeof frame.rid === 'number') {
      const p = this.pending.get(frame.rid);
      if (p && (frame.type === 'bid.result' || frame.type === 'ok' || frame.type === 'error')) {
        this.pending.delete(frame.rid);
        clearTimeout(p.timer);
        p.resolve(frame);
        return;
      }
    }
    if (frame.type === 'auction.state') {
      const state = frame as unknown as LiveState & { type: string };
      const known = this.states.get(state.auctionId);
      // Versions only grow: anything not newer is a duplicate or late (API.md).
      if (!known || state.version > known.version) {
        const { type: _type, ...rest } = state;
        this.states.set(state.auctionId, rest);
      }
    } else if (frame.type === 'error' && typeof frame.auctionId === 'number') {
      // A subscription refused for now (its shard changing primary): asked again shortly, or its states
      // would stop here. A refusal that is final (not_found) is left alone.
      if (!isRetrySafe(String(frame.code))) return;
      this.subscribed.delete(frame.auctionId);
      const why = `${String(frame.code)}: ${String(frame.message).replace(/\d+/g, 'N')}`;
      this.resubscribes.set(why, (this.resubscribes.get(why) ?? 0) + 1);
      setTimeout(() => this.watchBoard(), this.o.random.int(RESUBSCRIBE_DELAY_MS.min, RESUBSCRIBE_DELAY_MS.max));
      return;
    } else if (frame.type === 'notification') {
      const n = frame as unknown as SeenNotification;
      this.notifications.set(notificationKey(this.o.userId, n.kind, n.auctionId, n.eventSeq), {
        id: n.id,
        kind: n.kind,
        auctionId: n.auctionId,
        eventSeq: n.eventSeq,
      });
      if (n.id > this.seenUpTo) this.seenUpTo = n.id;
    } else {
      return;
    }
    this.o.onChange();
  }

  private ack(): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || this.seenUpTo <= this.ackedUpTo) return;
    socket.send(JSON.stringify({ type: 'notifications.ack', upTo: this.seenUpTo }));
    this.ackedUpTo = this.seenUpTo;
  }
}

/** A final answer: accepted, or refused for a reason other than "send again". */
function isDecided(frame: Frame): boolean {
  if (frame.type === 'error') return !isRetrySafe(String(frame.code));
  return frame.type === 'bid.result' && !(frame.status === 'rejected' && isRetrySafe(String(frame.reason)));
}

export const notificationKey = (userId: number, kind: string, auctionId: number, eventSeq: number) =>
  `${userId}/${kind}/${auctionId}/${eventSeq}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
