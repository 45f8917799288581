import t from 'tap';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { httpRequest, rawHttp, WsClient } from '../../testkit/index.js';
import { rssBytes, startSystem } from './fixture.js';

/**
 * WebSocket frames an attacker or a broken client would send to /v1/ws
 * (issue 17, item 4): random and mutated text and binary frames, truncated
 * msgpack, huge arrays, deep nesting, every message type with fields of the
 * wrong kind. None may take the gateway down, cut the connection or change
 * any state: each gets an error frame or a valid answer, the connection
 * still answers a ping after it, the engine's state hashes are unchanged,
 * and the gateway's memory stays bounded. Fixed seed, bounded count.
 */
const TYPES = [
  'bid',
  'auth',
  'subscribe',
  'unsubscribe',
  'notifications.ack',
  'ping',
  'create',
  'constructor',
  '__proto__',
];
/** Values of every kind where ids and amounts go: never a real auction's id, so no bid can be accepted. */
const oddValue = fc.oneof(
  fc.constantFrom(0, -1, 1.5, Number.NaN, Infinity, 2 ** 60, -0, '1', '', null, true, [], {}, 'x'.repeat(300)),
  fc.double(),
  fc.integer({ min: -(2 ** 31), max: 0 }),
  fc.string({ maxLength: 20 }),
  fc.anything({ maxDepth: 2 }),
);
const message = fc.record(
  {
    type: fc.oneof(fc.constantFrom(...TYPES), fc.string({ maxLength: 12 }), oddValue),
    // Never a real auction (ids are number * 1024 + shard, numbered from 1): shaped like one, or not at all.
    auctionId: fc.oneof(
      oddValue.filter((v) => !(typeof v === 'number' && Number.isSafeInteger(v) && v > 0)),
      fc.integer({ min: 2 ** 40, max: 2 ** 50 }),
    ),
    maxBid: oddValue,
    bidId: oddValue,
    upTo: oddValue,
    token: fc.oneof(fc.constant('v1.e30.AAAA'), oddValue),
    rid: fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), oddValue),
  },
  { requiredKeys: [] },
);
const nested = (depth: number, open: string, close: string, leaf: string) =>
  open.repeat(depth) + leaf + close.repeat(depth);
/** A frame: text or binary, well-formed or not. */
const frame: fc.Arbitrary<string | Buffer> = fc.oneof(
  message.map((m) => JSON.stringify(m)),
  message.map((m) => Buffer.from(pack(m))),
  // Truncated and bit-flipped msgpack of a plausible bid.
  fc.tuple(message, fc.nat(), fc.nat({ max: 255 })).map(([m, cut, flip]) => {
    const bytes = Buffer.from(pack({ type: 'bid', ...m }));
    const out = Buffer.from(bytes.subarray(0, cut % (bytes.length + 1)));
    if (out.length > 0) out[flip % out.length] ^= 0xff;
    return out;
  }),
  fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 500 }),
  fc.json({ maxDepth: 4 }).map((j) => j.slice(0, 4_000)),
  fc.anything({ maxDepth: 3 }).map((v) => Buffer.from(pack(v)).subarray(0, 8_000)),
  fc.constantFrom(
    // Deep nesting, well inside the 16 KiB frame limit.
    nested(5_000, '[', ']', '1'),
    nested(2_000, '{"a":', '}', '1'), // 12,001 bytes
    Buffer.concat([Buffer.alloc(10_000, 0x91), Buffer.from([0xc0])]), // msgpack: 10,000 nested arrays
    Buffer.concat([Buffer.alloc(5_000, 0x81), Buffer.alloc(5_000, 0xa0)]), // msgpack: unterminated nested maps
    // Huge counts announced, few bytes sent.
    Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), // array32 of 4 billion
    Buffer.from([0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 0x61]), // map32 of 2 billion
    Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x61]), // str32 of 4 GB
    Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff]), // bin32 of 2 GB
    Buffer.from(pack(new Array(1_300).fill({ type: 'bid' }))), // a big array (15.6 KB), not an object
    JSON.stringify(new Array(1_000).fill(0)),
    Buffer.from([0xd4, 0x01, 0x00]), // a msgpack extension the gateway does not know
    Buffer.alloc(0),
    '',
    '\u0000',
    '{"type":"bid","auctionId":1e400}',
    '{"__proto__":{"type":"bid"}}',
  ),
);

t.test('fuzzed WebSocket frames: the gateway answers each, keeps the connection, changes nothing', async (t) => {
  const s = await startSystem(t, ['--connection-messages-per-sec', '1000000', '--user-commands-per-sec', '1000000']);
  const seller = await s.user();
  const bidder = await s.user();
  await s.auction(seller.token);
  const hashes = await s.stateHashes();
  const pid = s.gateway.pid!;
  const wsUrl = s.gateway.wsUrl;
  const sockets = [
    await WsClient.connect(`${wsUrl}?token=${bidder.token}&format=msgpack`, 'msgpack'),
    await WsClient.connect(`${wsUrl}?format=json`, 'json'),
  ];
  t.teardown(() => sockets.forEach((c) => c.socket.terminate()));
  const rssBefore = rssBytes(pid);
  let errors = 0;
  let probes = 0;
  /** What was sent, for the message of a failure. */
  const sent: string[] = [];
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: 1 }), frame, async (which, f) => {
      const client = sockets[which];
      const from = client.messages.length;
      if (client.closed)
        throw new Error(
          `socket ${which} was closed (${JSON.stringify(client.closed)}) after: ${sent.slice(-3).join(' | ')}`,
        );
      client.sendRaw(f);
      sent.push(
        `${which}:${typeof f === 'string' ? 'text' : 'binary'} ${f.length} B ${Buffer.from(f).subarray(0, 24).toString('hex')}`,
      );
      // A ping after it: answered in order, so the fuzzed frame was handled (and answered) first.
      const pong = await client.request({ type: 'ping' });
      probes++;
      if (pong.type !== 'pong') return false;
      const answers = client.messages.slice(from, client.messages.indexOf(pong));
      errors += answers.filter((m) => m.type === 'error').length;
      // Every answer to a fuzzed frame is an error with a code, or a valid answer (never an accepted bid).
      return (
        answers.every(
          (m) =>
            (m.type === 'error' && typeof m.code === 'string' && typeof m.message === 'string') ||
            ['ok', 'pong', 'auction.state', 'bid.result', 'notification'].includes(m.type),
        ) && !answers.some((m) => m.type === 'bid.result' && m.status === 'accepted')
      );
    }),
    { numRuns: 400, seed: 17 },
  );
  t.equal(probes, 400);
  t.ok(errors > 300, `most fuzzed frames got an error frame (${errors})`);
  for (const c of sockets) t.equal(c.closed, null, 'no connection was cut');
  t.ok(s.gateway.isRunning, 'the gateway process is still running');
  t.equal((await rawHttp(s.gateway.port, httpRequest('GET', '/healthz'))).status, 200, 'and still serves');
  t.same(await s.stateHashes(), hashes, 'no fuzzed frame changed any state');
  const growth = rssBytes(pid) - rssBefore;
  t.ok(growth < 64 * 1024 * 1024, `the gateway's memory stays bounded (+${Math.round(growth / 1024)} KiB)`);
  const bid = await sockets[0].request({ type: 'bid', auctionId: 500_000 * 1024, maxBid: 5_000, bidId: 1 });
  t.match(
    bid,
    { type: 'bid.result', status: 'rejected', reason: 'auction_not_found' },
    'a well-formed bid still works',
  );
});
