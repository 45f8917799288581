import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';
import { closeTogether } from './socket-pair.js';

/** A message the server sends a client (`MSG`/`HMSG`), as the proxy sees it. */
export type ProxiedMessage = { subject: string; /** The header block of an HMSG ('' for a MSG). */ headers: string };

type Pair = { client: Socket; server: Socket; held: Buffer[] };

/**
 * A TCP proxy between NATS clients and a server that reads the server's side
 * of the protocol frame by frame, so that it can lose whole messages the way
 * a lossy path does (the client never sees them, the connection stays up),
 * hold some back while later ones pass (an answer that comes late, as one
 * from another part of the server may), and cut connections and refuse new
 * ones for a while: the faults a core subscription must survive. Client to
 * server bytes pass untouched.
 */
export class NatsProxy {
  private readonly pairs = new Set<Pair>();
  private drop: ((message: ProxiedMessage) => boolean) | null = null;
  private hold: ((message: ProxiedMessage) => boolean) | null = null;
  private refusing = false;
  /** Messages dropped so far. */
  dropped = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<NatsProxy> {
    const port = await freePort();
    const proxy: NatsProxy = new NatsProxy(
      createServer((client) => proxy.accept(client, targetHost, targetPort)),
      port,
    );
    await new Promise<void>((resolve) => proxy.server.listen(port, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Drops every message from the server for which `drop` returns true (null: none). */
  dropWhen(drop: ((message: ProxiedMessage) => boolean) | null): void {
    this.drop = drop;
  }

  /** Holds back every message from the server for which `hold` returns true, until `release()`; later ones pass. */
  holdWhen(hold: ((message: ProxiedMessage) => boolean) | null): void {
    this.hold = hold;
  }

  /** Sends what was held, in its order, and holds nothing more. */
  release(): void {
    this.hold = null;
    for (const pair of this.pairs) {
      if (pair.held.length > 0) pair.client.write(Buffer.concat(pair.held.splice(0)));
    }
  }

  /** Ends every current connection (the client sees the server go away). */
  sever(): void {
    for (const { client, server } of this.pairs) {
      client.destroy();
      server.destroy();
    }
  }

  /** While on, a new connection is closed as soon as it is made (the client keeps trying). */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, targetHost: string, targetPort: number): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: targetHost, port: targetPort });
    const pair: Pair = { client, server: upstream, held: [] };
    this.pairs.add(pair);
    client.pipe(upstream);
    let pending: Buffer = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      const { forward, rest } = this.frames(pending, pair);
      pending = rest;
      if (forward.length > 0) client.write(Buffer.concat(forward));
    });
    closeTogether(client, upstream, () => this.pairs.delete(pair));
  }

  /** Splits the server's bytes into whole frames: those to forward, and an incomplete rest. */
  private frames(bytes: Buffer, pair: Pair): { forward: Buffer[]; rest: Buffer } {
    const forward: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = bytes.indexOf('\r\n', at);
      if (eol < 0) break;
      const line = bytes.subarray(at, eol).toString('latin1');
      const isMsg = line.startsWith('MSG ');
      const isHmsg = line.startsWith('HMSG ');
      if (!isMsg && !isHmsg) {
        // INFO, PING, PONG, +OK, -ERR: one line each.
        forward.push(bytes.subarray(at, eol + 2));
        at = eol + 2;
        continue;
      }
      // MSG <subject> <sid> [reply] <size> | HMSG <subject> <sid> [reply] <header size> <total size>
      const tokens = line.split(' ');
      const total = Number(tokens[tokens.length - 1]);
      const headerSize = isHmsg ? Number(tokens[tokens.length - 2]) : 0;
      const end = eol + 2 + total + 2;
      if (bytes.length < end) break;
      const message = { subject: tokens[1], headers: bytes.subarray(eol + 2, eol + 2 + headerSize).toString('latin1') };
      if (this.drop?.(message)) this.dropped++;
      else if (this.hold?.(message)) pair.held.push(Buffer.from(bytes.subarray(at, end)));
      else forward.push(bytes.subarray(at, end));
      at = end;
    }
    return { forward, rest: bytes.subarray(at) };
  }
}
