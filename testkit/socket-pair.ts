import type { Socket } from 'node:net';

/** Ends both sides of a proxied connection when either errs or closes, and tells the proxy once per side. */
export function closeTogether(client: Socket, upstream: Socket, onClose: () => void): void {
  const close = () => {
    onClose();
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
}
