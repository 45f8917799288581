import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import t from 'tap';
import { unpack } from 'msgpackr';
import {
  acceptFor,
  BidFrames,
  BidSocket,
  BidSocketGroup,
  FrameError,
  FrameReader,
  PENDING_BYTES_MAX,
  readAnswer,
} from '../../bench/harness/bid-socket.js';
import { OpenLoopSchedule, pace } from '../../bench/harness/schedule.js';
import { LOAD_GATEWAY_FLAGS } from '../../bench/harness/gateway-flags.js';
import { Tokens } from '../../gateway/auth.js';
import { clientUnpackr } from '../../gateway/fanout/codec.js';
import { EngineProcess, GatewayProcess, startNats } from '../../testkit/index.js';

type ClientFrame = { fin: boolean; opcode: number; masked: boolean; mask: Buffer; payload: Buffer };

/** Reads the client frames (masked, 7-bit lengths only: all BidSocket sends) out of `bytes`, unmasked. */
function clientFrames(bytes: Buffer): ClientFrame[] {
  const frames: ClientFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    const length = bytes[at + 1] & 0x7f;
    if (length >= 126) throw new Error('a long client frame');
    const mask = bytes.subarray(at + 2, at + 6);
    const payload = Buffer.from(bytes.subarray(at + 6, at + 6 + length));
    for (let j = 0; j < payload.length; j++) payload[j] ^= mask[j & 3];
    frames.push({
      fin: (bytes[at] & 0x80) !== 0,
      opcode: bytes[at] & 0x0f,
      masked: (bytes[at + 1] & 0x80) !== 0,
      mask: Buffer.from(mask),
      payload,
    });
    at += 6 + length;
  }
  return frames;
}

/** A server frame (unmasked), with the shortest length encoding for its size. */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const first = (fin ? 0x80 : 0) | opcode;
  let header: Buffer;
  if (payload.length < 126) header = Buffer.from([first, payload.length]);
  else if (payload.length < 65_536) {
    header = Buffer.from([first, 126, 0, 0]);
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = 127;
    header.writeUInt32BE(0, 2);
    header.writeUInt32BE(payload.length, 6);
  }
  return Buffer.concat([header, payload]);
}

const bid = (auctionId: number, maxBid: number, bidId: number, rid: number) => ({
  type: 'bid',
  auctionId,
  maxBid,
  bidId,
  rid,
});

t.test('a queued bid is one masked binary frame whose payload msgpackr reads as exactly the bid', (t) => {
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 0],
    [42, 1_500, 7, 1],
    [2_000_000, 4_294_967_295, 9e15, 2 ** 31],
    [2 ** 53 - 1, 123_456_789_012, 2 ** 53 - 1, 9_999_999],
  ];
  const frames = new BidFrames();
  for (const c of cases) frames.queue(...c);
  t.equal(frames.pendingBytes, cases.length * 79, '79 bytes a bid: 6 of header and mask, 73 of payload');
  const bytes = frames.take();
  t.equal(frames.pendingBytes, 0, 'taking empties the queue');
  const decoded = clientFrames(bytes);
  t.equal(decoded.length, cases.length);
  decoded.forEach((frame, i) => {
    t.ok(frame.fin && frame.opcode === 0x2 && frame.masked, 'FIN, binary, masked');
    t.equal(frame.payload[0], 0x85, 'a map of 5');
    t.strictSame(unpack(frame.payload), bid(...cases[i]), `msgpackr unpack: ${JSON.stringify(cases[i])}`);
    t.strictSame(clientUnpackr.unpack(frame.payload), bid(...cases[i]), "and the gateway's own unpackr");
  });
  t.equal(new Set(decoded.map((f) => f.mask.toString('hex'))).size, cases.length, 'a fresh masking key per frame');

  // The buffer is reused: the next take holds only what was queued since.
  frames.queue(5, 6, 7, 8);
  t.strictSame(unpack(clientFrames(frames.take())[0].payload), bid(5, 6, 7, 8));
  t.same(unpack(clientFrames(bytes)[0].payload), bid(...cases[0]), 'a taken buffer is a copy, not overwritten');

  // Bounded: a caller that never flushes fails fast.
  const unflushed = new BidFrames();
  t.throws(() => {
    for (let i = 0; i <= PENDING_BYTES_MAX / 79; i++) unflushed.queue(1, 2, 3, i);
  }, /queued without a flush/);
  t.ok(unflushed.pendingBytes <= PENDING_BYTES_MAX);
  t.end();
});

t.test('the frame reader takes frames split across chunks and several in one chunk, all length forms', (t) => {
  const long = Buffer.alloc(300, 7);
  long.write('three hundred');
  const huge = Buffer.alloc(70_000, 9);
  const sent: [number, Buffer][] = [
    [0x2, Buffer.from('first')],
    [0x1, Buffer.from('{"type":"text"}')],
    [0x2, long],
    [0x9, Buffer.from('ping!')],
    [0x2, Buffer.alloc(0)],
    [0x2, huge],
    [0xa, Buffer.alloc(0)],
    [0x2, Buffer.from('last')],
  ];
  const stream = Buffer.concat(sent.map(([opcode, payload]) => serverFrame(opcode, payload)));
  const longAt = serverFrame(sent[0][0], sent[0][1]).length + serverFrame(sent[1][0], sent[1][1]).length;
  t.equal(stream[longAt + 1], 126, 'the 300-byte frame has a 16-bit length');
  const hugeAt = longAt + 4 + 300 + 7 + 2;
  t.equal(stream[hugeAt + 1], 127, 'the 70,000-byte one a 64-bit length');

  const splits: [string, (s: Buffer) => Buffer[]][] = [
    ['one chunk', (s) => [s]],
    ['a byte at a time', (s) => Array.from(s, (_, i) => s.subarray(i, i + 1))],
    [
      'uneven chunks, cutting headers and payloads',
      (s) => {
        const sizes = [1, 3, 5, 2, 9, 250, 4, 1, 40_000, 7, 13];
        const chunks: Buffer[] = [];
        for (let at = 0, n = 0; at < s.length; n++) {
          const size = sizes[n % sizes.length];
          chunks.push(s.subarray(at, at + size));
          at += size;
        }
        return chunks;
      },
    ],
  ];
  for (const [name, split] of splits) {
    const got: [number, Buffer][] = [];
    const reader = new FrameReader((opcode, payload) => got.push([opcode, Buffer.from(payload)]));
    for (const chunk of split(stream)) reader.push(chunk);
    t.equal(got.length, sent.length, `${name}: every frame`);
    t.ok(
      got.every(([opcode, payload], i) => opcode === sent[i][0] && payload.equals(sent[i][1])),
      `${name}: opcodes and payloads intact, in order`,
    );
  }

  const fragmented = new FrameReader(() => t.fail('no frame'));
  t.throws(
    () => fragmented.push(serverFrame(0x2, Buffer.from('part'), false)),
    { name: 'FrameError', message: /fragmented/ },
    'FIN clear: refused',
  );
  const continuation = new FrameReader(() => t.fail('no frame'));
  t.throws(() => continuation.push(serverFrame(0x0, Buffer.from('part'))), /fragmented/, 'a continuation: refused');
  const tooLong = new FrameReader(() => t.fail('no frame'), 1_000);
  t.throws(() => tooLong.push(serverFrame(0x2, Buffer.alloc(2_000)).subarray(0, 10)), /more than the 1000/);
  t.end();
});

t.test('pace calls afterBatch once after each group of due sends', async (t) => {
  let clock = 0;
  const events: string[] = [];
  await pace(new OpenLoopSchedule(1_000, 0, 10), (i) => events.push(`send ${i}`), {
    clock: () => clock,
    sleep: () => {
      clock += 3;
      return Promise.resolve();
    },
    afterBatch: () => events.push('batch'),
  });
  t.same(events, [
    'send 0',
    'batch',
    'send 1',
    'send 2',
    'send 3',
    'batch',
    'send 4',
    'send 5',
    'send 6',
    'batch',
    'send 7',
    'send 8',
    'send 9',
    'batch',
  ]);
});

type Teardown = { teardown: (fn: () => unknown) => void };

/** A WebSocket server of its own: answers the upgrade, then hands the raw socket and the request's headers to the test. */
async function fakeServer(
  t: Teardown,
  onSocket: (socket: Socket, headers: IncomingHttpHeaders) => void,
  accept = acceptFor,
): Promise<string> {
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  const sockets = new Set<Socket>();
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    sockets.add(socket);
    onSocket(socket, req.headers);
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept(req.headers['sec-websocket-key'] ?? '')}\r\n\r\n`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/ws?token=x`;
}

t.test("Sec-WebSocket-Accept is RFC 6455's", (t) => {
  t.equal(acceptFor('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'the example of section 1.3');
  t.end();
});

t.test('the socket: frames sent with the 101, pings answered, bids in one write, a close frame ends it', async (t) => {
  const received: Buffer[] = [];
  let server!: Socket;
  let headers: IncomingHttpHeaders = {};
  let gotData: () => void = () => undefined;
  const url = await fakeServer(t, (socket, h) => {
    server = socket;
    headers = h;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      gotData();
    });
    // Sent right behind the 101 (in the same write, once corked): the client gets them as `head`.
    socket.cork();
    process.nextTick(() => {
      socket.write(
        Buffer.concat([serverFrame(0x2, Buffer.from('hello')), serverFrame(0x9, Buffer.from('are you there'))]),
      );
      socket.uncork();
    });
  });
  const waitData = (bytes: number) =>
    new Promise<void>((resolve) => {
      gotData = () => {
        if (Buffer.concat(received).length >= bytes) resolve();
      };
      gotData();
    });

  const socket = await BidSocket.open(url);
  t.equal(headers['sec-websocket-version'], '13');
  t.match(headers.upgrade, /^websocket$/i);
  t.match(headers.connection, /upgrade/i);
  t.equal(Buffer.from(headers['sec-websocket-key'] ?? '', 'base64').length, 16, 'a key of 16 random bytes');
  const answers: string[] = [];
  socket.onAnswer = (payload) => answers.push(payload.toString());
  let closed = 0;
  socket.onClose = () => closed++;
  await waitData(6 + 13);
  t.same(answers, ['hello'], 'a frame that came with the 101 reaches onAnswer set after open');
  const pong = clientFrames(Buffer.concat(received.splice(0)));
  t.same(
    pong.map((f) => [f.opcode, f.masked, f.payload.toString()]),
    [[0xa, true, 'are you there']],
    'a ping is answered by a masked pong with its payload',
  );

  const writes: number[] = [];
  const raw = (socket as unknown as { socket: Socket }).socket;
  const write = raw.write.bind(raw);
  raw.write = (chunk: Buffer) => {
    writes.push(chunk.length);
    return write(chunk);
  };
  for (let rid = 0; rid < 3; rid++) socket.queueBid(10, 1_000 + rid, 100 + rid, rid);
  t.equal(writes.length, 0, 'nothing written before the flush');
  socket.flush();
  socket.flush();
  t.same(writes, [3 * 79], 'three bids, one write (a second flush with nothing pending writes nothing)');
  await waitData(3 * 79);
  t.strictSame(
    clientFrames(Buffer.concat(received.splice(0))).map((f) => unpack(f.payload) as unknown),
    [0, 1, 2].map((rid) => bid(10, 1_000 + rid, 100 + rid, rid)),
  );

  const ended = new Promise<void>((resolve) => server.once('end', resolve));
  server.write(serverFrame(0x8, Buffer.from([0x03, 0xe8])));
  await ended;
  const close = clientFrames(Buffer.concat(received.splice(0)));
  t.same(
    close.map((f) => [f.opcode, [...f.payload]]),
    [[0x8, [0x03, 0xe8]]],
    'a close frame is echoed with its status, then the socket ends',
  );
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(closed, 1, 'onClose once');
});

t.test('a fragmented frame from the server ends the socket with an error', async (t) => {
  const url = await fakeServer(t, (socket) =>
    setTimeout(() => socket.write(serverFrame(0x1, Buffer.from('part'), false)), 20),
  );
  const socket = await BidSocket.open(url);
  const error = await new Promise<Error>((resolve) => (socket.onError = resolve));
  t.ok(error instanceof FrameError, 'a FrameError');
  t.match(error.message, /fragmented/);
  t.ok((socket as unknown as { socket: Socket }).socket.destroyed, 'the socket is destroyed');
});

t.test('a wrong Sec-WebSocket-Accept rejects open', async (t) => {
  const url = await fakeServer(
    t,
    () => undefined,
    () => 'bm90IHRoZSByaWdodCB2YWx1ZQ==',
  );
  await t.rejects(BidSocket.open(url), /Sec-WebSocket-Accept/);
});

t.test('against a real gateway: three bids flushed at once are answered, and a bad token is refused', async (t) => {
  const secret = 'bid-socket-test-secret-0123456789';
  const tokens = new Tokens(secret, 3_600_000);
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0-3' });
  t.teardown(() => engine.close());
  const gateway = await GatewayProcess.start({ natsUrl: nats.url, secret, args: [...LOAD_GATEWAY_FLAGS] });
  t.teardown(() => gateway.close());
  const created = await fetch(`${gateway.url}/v1/auctions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.mint(1).token}` },
    body: JSON.stringify({ title: 'A lamp', startingPrice: 1_000, endsAt: Date.now() + 3_600_000 }),
  });
  t.equal(created.status, 201);
  const auctionId = ((await created.json()) as { id: number }).id;

  const socket = await BidSocket.open(`${gateway.wsUrl}?token=${tokens.mint(2).token}&format=msgpack`);
  t.teardown(() => socket.terminate());
  const answers: ReturnType<typeof readAnswer>[] = [];
  let all: () => void = () => undefined;
  const three = new Promise<void>((resolve) => (all = resolve));
  socket.onAnswer = (payload) => {
    const m = readAnswer(payload);
    if (m.type !== 'bid.result' && m.type !== 'error') return;
    answers.push(m);
    if (answers.length === 3) all();
  };
  for (let rid = 0; rid < 3; rid++) socket.queueBid(auctionId, 2_000 + rid * 1_000, 1 + rid, rid);
  socket.flush();
  await three;
  t.same(
    answers.map((m) => m.rid).sort((a, b) => a - b),
    [0, 1, 2],
    'one answer per bid',
  );
  // The same bidder raising its own maximum while it leads: each raise is accepted (the price stays).
  t.match(
    [...answers].sort((a, b) => a.rid - b.rid),
    [0, 1, 2].map((rid) => ({ type: 'bid.result', rid, bidId: rid + 1, auctionId, status: 'accepted', leading: true })),
    `all accepted: ${JSON.stringify(answers)}`,
  );

  await t.rejects(
    BidSocket.open(`${gateway.wsUrl}?token=v1.bad.token&format=msgpack`),
    /refused by 127\.0\.0\.1:\d+\/v1\/ws: HTTP 401/,
    'a bad token: the 401 of the upgrade, named',
  );
});

t.test('a group writes once per connection that got bids, and only those', (t) => {
  const calls: string[] = [];
  const fake = (name: string) =>
    ({
      queueBid: (_auctionId: number, _maxBid: number, _bidId: number, rid: number) =>
        calls.push(`${name} queue ${rid}`),
      flush: () => calls.push(`${name} flush`),
    }) as unknown as BidSocket;
  const group = new BidSocketGroup([fake('a'), fake('b'), fake('c')]);
  group.queueBid(0, 1, 100, 1, 0);
  group.queueBid(2, 1, 100, 2, 1);
  group.queueBid(0, 1, 200, 3, 2);
  group.flush();
  t.same(calls, ['a queue 0', 'c queue 1', 'a queue 2', 'a flush', 'c flush']);
  calls.length = 0;
  group.flush();
  t.same(calls, [], 'nothing queued since: no write');
  group.queueBid(1, 1, 100, 4, 3);
  group.flush();
  t.same(calls, ['b queue 3', 'b flush']);
  t.end();
});
