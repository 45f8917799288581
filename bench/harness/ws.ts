import WebSocket from 'ws';

/** A client WebSocket once open (no compression: the gateway does not negotiate it). */
export function openSocket(url: string, options: { skipUTF8Validation?: boolean } = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}
