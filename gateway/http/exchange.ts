import { randomBytes } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { ApiError, asApiError } from '../errors.js';

/**
 * Headers on every answer. The API serves JSON and event streams only: no
 * browser may sniff them into HTML or frame them, and nothing personal
 * (notifications, bids with maxima) may stay in a shared or browser cache.
 */
export const SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  ['X-Content-Type-Options', 'nosniff'],
  ['Cache-Control', 'no-store'],
  ['X-Frame-Options', 'DENY'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Referrer-Policy', 'no-referrer'],
];

/** Request ids: unique per gateway process (a random prefix) and cheap (a counter), for matching an answer to its log line. */
const REQUEST_ID_PREFIX = randomBytes(4).toString('hex');
let requestCounter = 0;
export function nextRequestId(): string {
  return `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`;
}

/**
 * A request being answered. uWS forbids touching `res` after the client
 * went away, and `req` after the handler returned: handlers read what they
 * need from `req` first, then work asynchronously, then answer through this.
 */
export class Exchange {
  aborted = false;
  done = false;
  readonly address: string;
  readonly requestId = nextRequestId();
  private readonly onAbort: (() => void)[] = [];

  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
      for (const f of this.onAbort) f();
    });
    this.address = Buffer.from(res.getRemoteAddressAsText()).toString();
  }

  whenAborted(f: () => void): void {
    this.onAbort.push(f);
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.send(status, body === undefined ? '' : JSON.stringify(body), {
      'Content-Type': 'application/json',
      ...headers,
    });
  }

  /** An error answer; an unexpected one says only that it happened, with the request id its log line carries. */
  error(error: ApiError, closeConnection = false): void {
    const body =
      error.code === 'internal'
        ? { code: error.code, message: `${error.message} (request id ${this.requestId})`, requestId: this.requestId }
        : { code: error.code, message: error.message };
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (error.retryAfterSeconds !== undefined) headers['Retry-After'] = String(error.retryAfterSeconds);
    this.send(error.status, JSON.stringify({ error: body }), headers, closeConnection);
  }

  send(status: number, body: string, headers: Record<string, string>, closeConnection = false): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.res.cork(() => {
      this.writeHead(status, headers);
      this.res.end(body, closeConnection);
    });
  }

  /** Starts an answer whose body is written later in parts (SSE); call inside `cork`. */
  writeHead(status: number, headers: Record<string, string>): void {
    this.res.writeStatus(STATUS_LINES[status] ?? String(status));
    for (const [k, v] of SECURITY_HEADERS) this.res.writeHeader(k, v);
    this.res.writeHeader('X-Request-Id', this.requestId);
    for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
  }
}

const STATUS_LINES: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/**
 * Reads a JSON body of at most `bytesMax` bytes. Must be called before the
 * handler returns (uWS delivers the body only to a handler registered then).
 */
export function readJson(ex: Exchange, req: HttpRequest, bytesMax: number): Promise<unknown> {
  const type = req.getHeader('content-type');
  const declared = req.getHeader('content-length');
  const body = new Promise<unknown>((resolve, reject) => {
    if (type && !/^application\/json\s*(;|$)/i.test(type)) {
      reject(new ApiError('unsupported_media_type'));
      ex.res.onData(() => {});
      return;
    }
    if (declared && Number(declared) > bytesMax) {
      reject(new ApiError('payload_too_large', `bodies are at most ${bytesMax} bytes`));
      ex.res.onData(() => {});
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    ex.res.onData((chunk, isLast) => {
      if (failed) return;
      size += chunk.byteLength;
      if (size > bytesMax) {
        failed = true;
        reject(new ApiError('payload_too_large', `bodies are at most ${bytesMax} bytes`));
        return;
      }
      // The chunk's memory is reused once this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (!isLast) return;
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text.length === 0 ? undefined : JSON.parse(text));
      } catch {
        reject(new ApiError('invalid_request', 'the body is not valid JSON'));
      }
    });
    ex.whenAborted(() => reject(new ApiError('invalid_request', 'the client went away')));
  });
  // The body is read from the start (uWS delivers it only to a reader registered at once), but a
  // handler may refuse the request (no token, a bad id) before it awaits the body. Its rejection
  // must then not count as unhandled: awaiting the promise still sees it.
  body.catch(() => undefined);
  return body;
}

/** The query string as a map (first value of each key), bounded. */
export function queryOf(req: HttpRequest): URLSearchParams {
  const query = req.getQuery() ?? '';
  if (query.length > 4_096) throw new ApiError('invalid_request', 'the query string is too long');
  return new URLSearchParams(query);
}

/** `Authorization: Bearer <token>` (empty when absent). */
export function bearer(req: HttpRequest): string {
  const header = req.getHeader('authorization');
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match ? match[1] : '';
}

/** Runs an async handler and turns what it throws into an error answer. */
export function answer(
  ex: Exchange,
  work: () => Promise<void>,
  onUnexpected: (error: unknown, requestId: string) => void,
): void {
  work().catch((error: unknown) => {
    const apiError = asApiError(error);
    if (apiError.code === 'internal') onUnexpected(error, ex.requestId);
    // A body too large is not read to its end: close the connection after answering.
    ex.error(apiError, apiError.code === 'payload_too_large');
  });
}

/**
 * Framing a proxy in front of the gateway could read differently from uWS,
 * which takes the first of several Content-Length headers: a request that
 * says two lengths (or one that is not a number) could smuggle a second
 * request inside its body, and so could one with Transfer-Encoding (chunked
 * bodies, which proxies and uWS may delimit differently, and which no client
 * of this API needs: bodies are small JSON). Such a request is refused and
 * its connection closed. uWS goes on parsing what is already buffered on that connection in
 * the same turn of the event loop (closing does not stop it), so every other
 * request from the same address in that turn is refused too: the smuggled
 * one never reaches a handler. The set is emptied at the next turn.
 */
export class FramingGuard {
  private readonly refusing = new Set<string>();

  /** The refusal for a request that must not be served (answer it and close), or null. */
  check(req: HttpRequest, address: string): ApiError | null {
    if (!this.refusing.has(address) && !ambiguousFraming(req)) return null;
    if (this.refusing.size === 0) setImmediate(() => this.refusing.clear());
    this.refusing.add(address);
    return new ApiError('invalid_request', 'a body needs exactly one decimal Content-Length and no Transfer-Encoding');
  }
}

function ambiguousFraming(req: HttpRequest): boolean {
  let length: string | null = null;
  let ambiguous = false;
  req.forEach((name, value) => {
    if (name === 'transfer-encoding') ambiguous = true;
    if (name !== 'content-length') return;
    if (!/^[0-9]{1,15}$/.test(value) || (length !== null && length !== value)) ambiguous = true;
    length = value;
  });
  return ambiguous;
}
