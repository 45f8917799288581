import { connect } from 'node:net';

export type RawResponse = { status: number; headers: Map<string, string[]>; body: string; raw: string };

/**
 * One HTTP/1.1 exchange over a plain TCP socket, for requests an ordinary
 * client refuses to send (two Content-Length headers, any method, bytes that
 * are not valid HTTP). The request is written as given; the answer is read
 * until the server closes the connection or (unless `untilClose`) a whole
 * response (by its Content-Length) has arrived; `raw` holds everything read,
 * further answers included. `status` 0: the connection closed with no answer.
 */
export function rawHttp(
  port: number,
  request: string | Buffer,
  timeoutMs = 10_000,
  untilClose = false,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(Buffer.concat(chunks).toString('latin1')));
    };
    const timer = setTimeout(() => {
      settled = true;
      socket.destroy();
      reject(
        new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(String(request).slice(0, 120))}`),
      );
    }, timeoutMs);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (!untilClose && complete(Buffer.concat(chunks).toString('latin1'))) finish();
    });
    socket.on('error', finish); // a reset after the answer (or instead of it) ends the exchange too
    socket.on('close', finish);
  });
}

function complete(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  return length !== null && text.length - end - 4 >= Number(length[1]);
}

function parse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const [statusLine, ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = new Map<string, string[]>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  const rest = end < 0 ? '' : raw.slice(end + 4);
  const length = headers.get('content-length')?.[0];
  // Only this answer's body: anything after it is a further answer on the same connection (see `raw`).
  return { status, headers, body: length === undefined ? rest : rest.slice(0, Number(length)), raw };
}

/** A request's text: `Connection: close` unless `headers` says otherwise, plus a Content-Length for the body unless `headers` sets one. */
export function httpRequest(method: string, path: string, headers: [string, string][] = [], body = ''): string {
  const has = (name: string) => headers.some(([k]) => k.toLowerCase() === name);
  const lines = [
    `${method} ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    ...(has('connection') ? [] : ['Connection: close']),
    ...headers.map(([k, v]) => `${k}: ${v}`),
  ];
  if (body && !has('content-length') && !has('transfer-encoding'))
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
