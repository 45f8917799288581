import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { unpack } from 'msgpackr';

/**
 * The load generator's bidding connection: a minimal WebSocket client that
 * does only what the generator needs, cheaply. Why not the `ws` library: per
 * bid it msgpack-encoded a fresh object, then `ws.send` framed and masked it
 * into its own buffer and wrote it on its own (one socket write per bid);
 * that came to ~43 us of CPU per bid, more than the engine spends deciding
 * it, and the generator shares its 2 cores with what it measures. Here a bid
 * is a fixed-layout msgpack template with its numbers patched in place,
 * masked straight into a per-connection buffer, and every bid due in one
 * pacing tick leaves in one write. Answers are handed over as raw payloads.
 * Only what the gateway speaks is supported: ws:// (no TLS), no extensions,
 * no fragmented messages.
 */

/** RFC 6455's fixed GUID for Sec-WebSocket-Accept (section 1.3). */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The Sec-WebSocket-Accept a server must answer to `key`: base64(sha1(key + GUID)). */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

// --- bid frames -----------------------------------------------------------------------------------

/**
 * `{type:'bid', auctionId, maxBid, bidId, rid}` as msgpack, encoded once:
 * a fixmap of 5, fixstr keys, 'bid' as a fixstr and every number as a
 * float64 (0xcb + 8 bytes big-endian), so each number sits at a fixed offset
 * whatever its value and a bid is this template with 4 doubles written over
 * it. A float64 holding an integer decodes to that integer (msgpackr gives a
 * JS number either way), which is all the gateway checks.
 */
const TEMPLATE = Buffer.concat([
  Buffer.from([0x85]),
  fixstr('type'),
  fixstr('bid'),
  fixstr('auctionId'),
  float64Slot(),
  fixstr('maxBid'),
  float64Slot(),
  fixstr('bidId'),
  float64Slot(),
  fixstr('rid'),
  float64Slot(),
]);
/** Offsets (within the payload) of the 8 bytes of each number. */
const AUCTION_AT = 1 + 5 + 4 + 10 + 1;
const MAX_BID_AT = AUCTION_AT + 8 + 7 + 1;
const BID_ID_AT = MAX_BID_AT + 8 + 6 + 1;
const RID_AT = BID_ID_AT + 8 + 4 + 1;
const PAYLOAD_BYTES = TEMPLATE.length;
/** FIN|binary, then mask bit | 7-bit length, then the 4-byte masking key. */
const HEADER_BYTES = 2 + 4;
const FRAME_BYTES = HEADER_BYTES + PAYLOAD_BYTES;
if (PAYLOAD_BYTES >= 126 || RID_AT + 8 !== PAYLOAD_BYTES) throw new Error('bid template layout is off');

function fixstr(text: string): Buffer {
  const bytes = Buffer.from(text, 'ascii');
  return Buffer.concat([Buffer.from([0xa0 | bytes.length]), bytes]);
}

function float64Slot(): Buffer {
  const slot = Buffer.alloc(9);
  slot[0] = 0xcb;
  return slot;
}

/**
 * Masking keys: RFC 6455 wants a fresh unpredictable key per client frame.
 * One randomFillSync of 64 KiB gives 16,384 of them, instead of a call (and
 * an allocation) per frame. One pool per thread; nothing here is secret.
 */
const maskPool = Buffer.allocUnsafe(64 * 1024);
let maskAt = maskPool.length;

/** The offset in `maskPool` of a fresh 4-byte key. */
function takeMask(): number {
  if (maskAt + 4 > maskPool.length) {
    randomFillSync(maskPool);
    maskAt = 0;
  }
  const at = maskAt;
  maskAt += 4;
  return at;
}

/** A masked client frame of `payload` (a control frame: < 126 bytes). Rare (pings, close): allocates. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  const key = takeMask();
  maskPool.copy(out, 2, key, key + 4);
  for (let j = 0; j < payload.length; j++) out[HEADER_BYTES + j] = payload[j] ^ maskPool[key + (j & 3)];
  return out;
}

/** At most this much may wait for a flush: a caller that never flushes fails fast instead of growing without end. */
export const PENDING_BYTES_MAX = 1024 * 1024;

/**
 * The bid frames of one connection waiting to be written: a buffer that
 * grows by doubling (up to PENDING_BYTES_MAX) and is reused after each take,
 * so queueing a bid allocates nothing.
 */
export class BidFrames {
  private buffer = Buffer.allocUnsafe(FRAME_BYTES * 32);
  private length = 0;

  get pendingBytes(): number {
    return this.length;
  }

  queue(auctionId: number, maxBid: number, bidId: number, rid: number): void {
    const at = this.length;
    const end = at + FRAME_BYTES;
    if (end > this.buffer.length) this.grow(end);
    const b = this.buffer;
    b[at] = 0x82; // FIN | binary
    b[at + 1] = 0x80 | PAYLOAD_BYTES; // masked, 7-bit length
    const key = takeMask();
    maskPool.copy(b, at + 2, key, key + 4);
    const p = at + HEADER_BYTES;
    TEMPLATE.copy(b, p);
    b.writeDoubleBE(auctionId, p + AUCTION_AT);
    b.writeDoubleBE(maxBid, p + MAX_BID_AT);
    b.writeDoubleBE(bidId, p + BID_ID_AT);
    b.writeDoubleBE(rid, p + RID_AT);
    for (let j = 0; j < PAYLOAD_BYTES; j++) b[p + j] ^= maskPool[key + (j & 3)];
    this.length = end;
  }

  /**
   * What is pending, as a copy (the socket may hold on to what it is given
   * until the kernel takes it, while this buffer is refilled), and empties it.
   */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.buffer.copy(out, 0, 0, this.length);
    this.length = 0;
    return out;
  }

  private grow(needed: number): void {
    if (needed > PENDING_BYTES_MAX)
      throw new Error(`more than ${PENDING_BYTES_MAX} bytes of bids queued without a flush`);
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const bigger = Buffer.allocUnsafe(Math.min(size, PENDING_BYTES_MAX));
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }
}

// --- server frames --------------------------------------------------------------------------------

/** A server frame the generator cannot take: the stream cannot be resynchronised after it. */
export class FrameError extends Error {
  override name = 'FrameError';
}

/** The largest server frame accepted (the gateway's are a few hundred bytes; a state frame may be more). */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;

/**
 * Cuts server frames out of a TCP byte stream: `push` each chunk as it
 * arrives, `onFrame(opcode, payload)` is called for every complete frame,
 * in order. A frame split across chunks is kept in a carry-over buffer
 * (reused, bounded by FRAME_BYTES_MAX) until its last byte arrives; frames
 * wholly inside a chunk are handed over as subarrays of it, so nothing is
 * allocated per frame but that subarray. The payload is valid only during
 * the call. Throws a FrameError on what the generator does not support (fragmented
 * messages, extensions, masked server frames, oversized frames); the stream
 * cannot be resynchronised after that.
 */
export class FrameReader {
  private carry = Buffer.allocUnsafe(4096);
  private carried = 0;

  constructor(
    private readonly onFrame: (opcode: number, payload: Buffer) => void,
    private readonly maxFrameBytes = FRAME_BYTES_MAX,
  ) {}

  push(chunk: Buffer): void {
    let at = 0;
    if (this.carried > 0) {
      at = this.completeCarried(chunk);
      if (at < 0) return;
    }
    const end = chunk.length;
    while (at < end) {
      const available = end - at;
      const header = headerBytes(chunk, at, available);
      if (available < header) break;
      const total = header + this.payloadBytes(chunk, at);
      if (available < total) break;
      this.onFrame(chunk[at] & 0x0f, chunk.subarray(at + header, at + total));
      at += total;
    }
    if (at < end) {
      this.reserve(end - at);
      chunk.copy(this.carry, 0, at, end);
      this.carried = end - at;
    }
  }

  /**
   * Tops up the carried partial frame from `chunk`, taking only that frame's
   * bytes (the rest of the chunk is parsed in place). The offset in `chunk`
   * after it, or -1 when the chunk ended first.
   */
  private completeCarried(chunk: Buffer): number {
    let used = 0;
    for (;;) {
      const header = headerBytes(this.carry, 0, this.carried);
      if (this.carried < header) {
        used += this.topUp(chunk, used, header);
        if (this.carried < header) return -1;
        continue;
      }
      const total = header + this.payloadBytes(this.carry, 0);
      this.reserve(total);
      used += this.topUp(chunk, used, total);
      if (this.carried < total) return -1;
      this.carried = 0;
      this.onFrame(this.carry[0] & 0x0f, this.carry.subarray(header, total));
      return used;
    }
  }

  /** Copies bytes of `chunk` from `from` into the carry until it holds `upTo` bytes; how many it copied. */
  private topUp(chunk: Buffer, from: number, upTo: number): number {
    const n = Math.min(upTo - this.carried, chunk.length - from);
    chunk.copy(this.carry, this.carried, from, from + n);
    this.carried += n;
    return n;
  }

  private reserve(bytes: number): void {
    if (bytes <= this.carry.length) return;
    let size = this.carry.length * 2;
    while (size < bytes) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.carry.copy(bigger, 0, 0, this.carried);
    this.carry = bigger;
  }

  /** The payload length of the frame whose (complete) header starts at `at`, after checking it is one we take. */
  private payloadBytes(b: Buffer, at: number): number {
    const first = b[at];
    if ((first & 0x80) === 0 || (first & 0x0f) === 0)
      throw new FrameError('a fragmented WebSocket message (FIN clear or continuation): not supported by BidSocket');
    if ((first & 0x70) !== 0) throw new FrameError('a WebSocket frame with RSV bits set: no extension was negotiated');
    if ((b[at + 1] & 0x80) !== 0) throw new FrameError('a masked frame from the server (RFC 6455 forbids it)');
    const len7 = b[at + 1] & 0x7f;
    let length = len7;
    if (len7 === 126) length = b.readUInt16BE(at + 2);
    else if (len7 === 127) length = b.readUInt32BE(at + 2) * 2 ** 32 + b.readUInt32BE(at + 6);
    if (length > this.maxFrameBytes)
      throw new FrameError(`a WebSocket frame of ${length} bytes: more than the ${this.maxFrameBytes} accepted`);
    return length;
  }
}

/** How long the header of the frame at `at` is (2, 4 or 10 bytes), once its first 2 bytes are there; 2 before. */
function headerBytes(b: Buffer, at: number, available: number): number {
  if (available < 2) return 2;
  const len7 = b[at + 1] & 0x7f;
  return len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
}

// --- the connection -------------------------------------------------------------------------------

/**
 * One bidding connection to the gateway. `queueBid` as many bids as are due,
 * then `flush` once: they leave in one write. Answers (binary or text
 * frames) go to `onAnswer` as raw payloads, valid only during the call (see
 * `readAnswer`); pings are answered; `onClose` is called once when the
 * connection ends (a close frame or the socket closing), `onError` on a
 * socket or protocol error.
 */
export class BidSocket {
  onAnswer: (payload: Buffer) => void = () => undefined;
  onClose: () => void = () => undefined;
  onError: (error: Error) => void = () => undefined;

  private readonly frames = new BidFrames();
  private readonly reader: FrameReader;
  private head: Buffer | null;
  private ended = false;

  private constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    this.reader = new FrameReader((opcode, payload) => this.frame(opcode, payload));
    // Bids are written in batches already: Nagle would only hold the batch back.
    socket.setNoDelay(true);
    // Bytes that came with the 101 are the start of the frame stream. They are parsed once the
    // caller had a chance to set onAnswer (after open resolves), and before any later chunk.
    this.head = head.length > 0 ? head : null;
    if (this.head) setImmediate(() => this.takeHead());
    socket.on('data', (chunk: Buffer) => {
      this.takeHead();
      this.receive(chunk);
    });
    socket.on('error', (error) => this.onError(error));
    socket.on('close', () => this.end());
  }

  /** Opens `ws://host:port/path?query` (RFC 6455 opening handshake over node:http). */
  static open(url: string): Promise<BidSocket> {
    const target = new URL(url);
    if (target.protocol !== 'ws:')
      return Promise.reject(new Error(`BidSocket speaks ws:// only, not ${target.protocol}`));
    // Named without the query: it carries the token.
    const where = `${target.host}${target.pathname}`;
    const key = randomBytes(16).toString('base64');
    const expected = acceptFor(key);
    return new Promise((resolve, reject) => {
      const req = request({
        host: target.hostname.replace(/^\[|\]$/g, ''),
        port: target.port || 80,
        path: target.pathname + target.search,
        method: 'GET',
        // A socket of its own, never pooled: it becomes the WebSocket.
        agent: false,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': key,
        },
      });
      req.once('upgrade', (res, socket: Socket, head: Buffer) => {
        const accept = res.headers['sec-websocket-accept'];
        if (accept !== expected) {
          socket.destroy();
          reject(
            new Error(`WebSocket handshake with ${where}: Sec-WebSocket-Accept ${String(accept)}, not ${expected}`),
          );
          return;
        }
        resolve(new BidSocket(socket, head));
      });
      // Any answer but 101: refused. The body (the gateway's error) says why.
      req.once('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (text: string) => {
          if (body.length < 500) body += text;
        });
        const refuse = () =>
          reject(
            new Error(`WebSocket upgrade refused by ${where}: HTTP ${res.statusCode} ${body.slice(0, 500)}`.trimEnd()),
          );
        res.once('end', refuse);
        res.once('error', refuse);
      });
      req.once('error', reject);
      req.end();
    });
  }

  /** Bytes queued and not yet flushed. */
  get pendingBytes(): number {
    return this.frames.pendingBytes;
  }

  /** Queues one bid frame; nothing is written until `flush`. Throws past PENDING_BYTES_MAX. */
  queueBid(auctionId: number, maxBid: number, bidId: number, rid: number): void {
    this.frames.queue(auctionId, maxBid, bidId, rid);
  }

  /** Writes every queued frame in one socket write. On a closed connection they are dropped (never answered). */
  flush(): void {
    if (this.frames.pendingBytes === 0) return;
    const bytes = this.frames.take();
    if (!this.ended && !this.socket.destroyed) this.socket.write(bytes);
  }

  terminate(): void {
    this.socket.destroy();
  }

  private takeHead(): void {
    const head = this.head;
    if (!head) return;
    this.head = null;
    this.receive(head);
  }

  private receive(chunk: Buffer): void {
    if (this.ended) return;
    try {
      this.reader.push(chunk);
    } catch (error) {
      // A protocol error ends the connection; an error of the caller's onAnswer is the caller's.
      if (!(error instanceof FrameError)) throw error;
      this.socket.destroy();
      this.onError(error);
      this.end();
    }
  }

  private frame(opcode: number, payload: Buffer): void {
    if (this.ended) return;
    switch (opcode) {
      case 0x1:
      case 0x2:
        this.onAnswer(payload);
        return;
      case 0x9:
        this.socket.write(maskedFrame(0xa, payload));
        return;
      case 0xa:
        return;
      case 0x8:
        // Echo the status code, as RFC 6455 asks, and stop.
        this.socket.end(maskedFrame(0x8, payload.subarray(0, 2)));
        this.end();
        return;
      default:
        throw new FrameError(`a WebSocket frame with the unknown opcode 0x${opcode.toString(16)}`);
    }
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
  }
}

// --- answers --------------------------------------------------------------------------------------

/**
 * One generator thread's connections: bids are queued per connection as
 * they fall due, and `flush` makes each connection that got some write them
 * in one go (several due at once on one connection: one write, not one per bid).
 */
export class BidSocketGroup {
  private readonly touched: number[] = [];
  private readonly isTouched: Uint8Array;

  constructor(readonly sockets: BidSocket[]) {
    this.isTouched = new Uint8Array(sockets.length);
  }

  queueBid(connection: number, auctionId: number, maxBid: number, bidId: number, rid: number): void {
    this.sockets[connection].queueBid(auctionId, maxBid, bidId, rid);
    if (this.isTouched[connection]) return;
    this.isTouched[connection] = 1;
    this.touched.push(connection);
  }

  flush(): void {
    for (const c of this.touched) {
      this.isTouched[c] = 0;
      this.sockets[c].flush();
    }
    this.touched.length = 0;
  }
}

export type Answer = {
  type: string;
  rid: number;
  status: string;
  reason?: string;
  code?: string;
  message?: string;
};

/**
 * An answer frame's payload as an object: `{type:'bid.result', rid, status,
 * reason?, ...}` or `{type:'error', rid, code, message}` (other frames, e.g.
 * notifications, come out as they are; check `type`). The gateway packs
 * plain maps (no msgpackr records), which msgpackr's `unpack` reads.
 */
export function readAnswer(payload: Buffer): Answer {
  return unpack(payload) as Answer;
}
