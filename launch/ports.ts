import { createServer } from 'node:net';

const handedOut = new Set<number>();

/**
 * A free TCP port on 127.0.0.1, chosen by the kernel. Ports already handed out
 * by this process are never returned twice, so servers started together do
 * not collide before they bind.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (port && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
