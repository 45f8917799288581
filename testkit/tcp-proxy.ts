import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';
import { closeTogether } from './socket-pair.js';

/**
 * A TCP proxy on 127.0.0.1 for fault injection (no tc/iptables here). It can
 * hold one direction (bytes wait, in order, until `release`), which models a
 * network that stalls: e.g. holding `up` (client to server) lets a NATS client
 * receive requests while its publishes and replies go nowhere for a while.
 */
export class TcpProxy {
  private readonly pairs = new Set<{ client: Socket; server: Socket }>();
  private held = { up: false, down: false };
  private refusing = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    const port = await freePort();
    const proxy: TcpProxy = new TcpProxy(
      createServer((client) => {
        if (proxy.refusing) return void client.destroy();
        const upstream = createConnection({ host: targetHost, port: targetPort });
        const pair = { client, server: upstream };
        proxy.pairs.add(pair);
        client.pipe(upstream);
        upstream.pipe(client);
        if (proxy.held.up) client.pause();
        if (proxy.held.down) upstream.pause();
        closeTogether(client, upstream, () => proxy.pairs.delete(pair));
      }),
      port,
    );
    await new Promise<void>((resolve) => proxy.server.listen(port, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Stops forwarding one direction; bytes wait in the socket buffers. */
  hold(direction: 'up' | 'down'): void {
    this.held[direction] = true;
    for (const { client, server } of this.pairs) (direction === 'up' ? client : server).pause();
  }

  release(direction: 'up' | 'down'): void {
    this.held[direction] = false;
    for (const { client, server } of this.pairs) (direction === 'up' ? client : server).resume();
  }

  /** Ends every current connection: both ends see the link fail (with `hold` they see silence). */
  sever(): void {
    for (const { client, server } of this.pairs) {
      client.destroy();
      server.destroy();
    }
  }

  /** While on, a new connection is closed as soon as it is made (the client keeps trying): a cut network. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
