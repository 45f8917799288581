import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import { Waiters } from './waiters.js';

export type WsMessage = Record<string, unknown> & { type: string };

/**
 * A real WebSocket client for tests and the bench: JSON text or msgpack
 * binary frames, every message kept in arrival order, and waits that resolve
 * on the message itself (never on a timer, except as a failure deadline).
 */
export class WsClient {
  readonly messages: WsMessage[] = [];
  private readonly waiters = new Waiters();
  private nextRid = 1;
  closed: { code: number; reason: string } | null = null;

  private constructor(
    readonly socket: WebSocket,
    readonly format: 'json' | 'msgpack',
  ) {
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      this.messages.push((isBinary ? unpack(data) : JSON.parse(data.toString())) as WsMessage);
      this.waiters.wake();
    });
    socket.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.waiters.wake();
    });
  }

  /** `localAddress`: the client's source address (any of 127.0.0.0/8), to look like another client to the server. */
  static connect(url: string, format: 'json' | 'msgpack' = 'json', localAddress?: string): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, localAddress ? { localAddress } : {});
      const client = new WsClient(socket, format);
      socket.once('open', () => resolve(client));
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) =>
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { statusCode: res.statusCode })),
      );
    });
  }

  send(message: Record<string, unknown>): void {
    this.socket.send(this.format === 'msgpack' ? pack(message) : JSON.stringify(message));
  }

  /** Sends raw bytes or text as they are (malformed-frame tests). */
  sendRaw(data: string | Buffer): void {
    this.socket.send(data);
  }

  /** Sends with a fresh rid and resolves with the first answer carrying it. */
  async request(message: Record<string, unknown>, timeoutMs = 10_000): Promise<WsMessage> {
    const rid = this.nextRid++;
    const from = this.messages.length;
    this.send({ ...message, rid });
    return this.waitFor((m) => m.rid === rid, timeoutMs, from);
  }

  /** The first message (from index `from`) matching, as soon as it arrives. */
  waitFor(match: (m: WsMessage) => boolean, timeoutMs = 10_000, from = 0): Promise<WsMessage> {
    return this.waiters.until(
      () => {
        for (let i = from; i < this.messages.length; i++) if (match(this.messages[i])) return this.messages[i];
        if (this.closed) throw new Error(`socket closed (${this.closed.code} ${this.closed.reason}) while waiting`);
        return undefined;
      },
      timeoutMs,
      () => `no matching message in ${timeoutMs} ms; last: ${JSON.stringify(this.messages.slice(-3))}`,
    );
  }

  /** Resolves when the server closes the socket. */
  waitClosed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve(this.closed);
      const timer = setTimeout(() => reject(new Error('socket not closed')), timeoutMs);
      this.socket.once('close', (code: number, reason: Buffer) => {
        clearTimeout(timer);
        resolve({ code, reason: reason.toString() });
      });
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close();
    });
  }
}
