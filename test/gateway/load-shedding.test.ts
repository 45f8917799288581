import t from 'tap';
import { GatewayProcess, WsClient, type WsMessage } from '../../testkit/index.js';
import { decode, encode, shardOfAuction, subjects } from '../../protocol/index.js';
import { SECRET, startSystem } from './fixture.js';

/**
 * The gateway's admission budget through the real processes (issue 17): with
 * the engine stopped (SIGSTOP) the shard's budget fills, and every further
 * bid is answered at once, over WebSocket and HTTP, `overloaded` with a
 * `retryAfterMs` (HTTP: 200 and Retry-After), nothing sent or recorded; once
 * the engine runs again the same bidIds are decided, once each.
 */
t.test('past the shard budget bids are shed at once, never recorded, and their retries count once', async (t) => {
  const s = await startSystem(t, ['--shard-commands-in-flight-max', '2']);
  const seller = await s.user();
  const bidder = await s.user();
  const auction = await s.auction(seller.token);
  const ws = await WsClient.connect(`${s.gateway.wsUrl}?token=${bidder.token}&format=msgpack`, 'msgpack');
  t.teardown(() => ws.close());
  const hashBefore = await s.stateHashes();

  process.kill(s.engine.pid!, 'SIGSTOP');
  let resumed = false;
  const resume = () => {
    if (!resumed) process.kill(s.engine.pid!, 'SIGCONT');
    resumed = true;
  };
  t.teardown(resume);
  const bids = Array.from({ length: 12 }, (_, i) => ({ bidId: i + 1, maxBid: 2_000 + i * 100 }));
  const answers = bids.map((b) =>
    ws.request({ type: 'bid', auctionId: auction.id, ...b }, 15_000).then((m) => ({ ...b, m })),
  );
  // Two fill the budget and wait for the stopped engine; the other ten are answered now.
  const shedOnWs: { bidId: number; maxBid: number; m: WsMessage }[] = [];
  for (let i = 0; i < 10; i++) {
    const m = await ws.waitFor(
      (x) => x.type === 'bid.result' && x.reason === 'overloaded' && !shedOnWs.some((y) => y.m === x),
    );
    shedOnWs.push({ ...bids.find((b) => b.bidId === m.bidId)!, m });
  }
  for (const { m } of shedOnWs) {
    t.match(m, { type: 'bid.result', status: 'rejected', reason: 'overloaded', seq: 0, auctionId: auction.id });
    t.ok(
      typeof m.retryAfterMs === 'number' && m.retryAfterMs >= 10 && m.retryAfterMs <= 5_000,
      `retryAfterMs ${String(m.retryAfterMs)}`,
    );
  }
  const http = await fetch(`${s.gateway.url}/v1/auctions/${auction.id}/bids`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bidder.token}` },
    body: JSON.stringify({ bidId: 100, maxBid: 9_000 }),
  });
  t.equal(http.status, 200, 'a shed bid is a 200 like any rejection');
  t.match(await http.json(), { status: 'rejected', reason: 'overloaded', bidId: 100, seq: 0 });
  t.ok(Number(http.headers.get('retry-after')) >= 1, `Retry-After: ${http.headers.get('retry-after')}`);
  resume();

  const settled = await Promise.all(answers);
  const admitted = settled.filter((a) => a.m.reason !== 'overloaded');
  t.equal(admitted.length, 2, 'the two bids within the budget were decided');
  for (const a of admitted) t.match(a.m, { status: 'accepted' });
  // The shed bids again, with the same bidIds, one at a time: each decided now, none a duplicate.
  for (const b of [...shedOnWs.map(({ bidId, maxBid }) => ({ bidId, maxBid })), { bidId: 100, maxBid: 9_000 }]) {
    const m = await ws.request({ type: 'bid', auctionId: auction.id, ...b });
    t.match(m, { type: 'bid.result', status: 'accepted' }, `bid ${b.bidId} decided on its retry`);
    t.notOk(m.duplicate, 'never decided before');
  }
  // The engine's own state (the read model may trail the last answer by a moment).
  const reply = await s.nc.request(
    subjects.control(shardOfAuction(auction.id)),
    encode({ op: 'state', auctionId: auction.id }),
    { timeout: 5_000 },
  );
  const { auction: state } = decode(reply.data) as { auction: { bidCount: number } };
  t.equal(state.bidCount, 13, 'every bid counted once: 2 admitted, 11 retried');
  t.notSame(await s.stateHashes(), hashBefore, 'the retries changed the state (the shed bids had not)');
  const metrics = await s.http<string>('GET', '/metrics');
  const shed = [...metrics.body.matchAll(/^gateway_bids_shed_total\{shard="\d+"\} (\d+)$/gm)].reduce(
    (a, m) => a + Number(m[1]),
    0,
  );
  t.equal(shed, 11, 'every shed bid counted');
  t.match(metrics.body, /gateway_bids_total\{outcome="overloaded"\} 11/);
});

/**
 * A gateway that is itself the bottleneck (issue 17 item 2): its event loop
 * runs late, so it sheds a share of bids at the frame (gateway/saturation.ts)
 * before spending anything else on them. The target is set to 1 ms so that
 * a flood from four connections saturates it on any machine. Every shed bid
 * is answered `overloaded` with a `retryAfterMs` of 50 ms - 2 s and counted
 * by `gateway_bids_shed_saturated_total`; none was recorded: each one's
 * retry with the same bidId, through a second gateway, is decided then,
 * never as a duplicate, and the engine counts every accepted bid once.
 */
t.test('a saturated gateway sheds bids at the frame; none is recorded and each retry counts once', async (t) => {
  const s = await startSystem(t, [
    '--loop-lag-target-ms',
    '1',
    '--user-commands-per-sec',
    '1000000',
    '--connection-messages-per-sec',
    '1000000',
  ]);
  const seller = await s.user();
  const bidders: { token: string }[] = [];
  const auctions: { id: number }[] = [];
  for (let k = 0; k < 4; k++) {
    bidders.push(await s.user()); // one registration at a time from an address
    auctions.push(await s.auction(seller.token));
  }
  const sockets = await Promise.all(
    bidders.map((b) => WsClient.connect(`${s.gateway.wsUrl}?token=${b.token}&format=msgpack`, 'msgpack')),
  );
  t.teardown(() => Promise.all(sockets.map((ws) => ws.close())));
  const BIDS = 2_500;
  const WAVE = 250;
  type Bid = { auctionId: number; bidId: number; maxBid: number };
  const firstAnswers: { bid: Bid; ws: WsClient; m: WsMessage }[] = [];
  // Each connection bids on its own auction, every bid higher than the last: all accepted once decided.
  await Promise.all(
    sockets.map(async (ws, k) => {
      for (let from = 0; from < BIDS; from += WAVE) {
        const wave = Array.from({ length: WAVE }, (_, i) => ({
          auctionId: auctions[k].id,
          bidId: from + i + 1,
          maxBid: 2_000 + (from + i) * 100,
        }));
        const answers = await Promise.all(wave.map((bid) => ws.request({ type: 'bid', ...bid }, 30_000)));
        answers.forEach((m, i) => firstAnswers.push({ bid: wave[i], ws, m }));
      }
    }),
  );
  const shed = firstAnswers.filter((a) => a.m.reason === 'overloaded');
  t.ok(shed.length > 0, `the flood was shed in part (${shed.length} of ${firstAnswers.length})`);
  const misshapen = shed.filter(
    ({ m }) =>
      m.type !== 'bid.result' ||
      m.status !== 'rejected' ||
      m.seq !== 0 ||
      typeof m.retryAfterMs !== 'number' ||
      m.retryAfterMs < 10 ||
      m.retryAfterMs > 5_000,
  );
  t.same(misshapen, [], 'each a rejection with seq 0 and a retryAfterMs of 10 ms - 5 s');
  const metrics = await s.http<string>('GET', '/metrics');
  const atFrame = Number(/^gateway_bids_shed_saturated_total (\d+)$/m.exec(metrics.body)?.[1]);
  const overloaded = Number(/^gateway_bids_total\{outcome="overloaded"\} (\d+)$/m.exec(metrics.body)?.[1]);
  t.ok(atFrame > 0 && atFrame <= shed.length, `shed at the frame: ${atFrame} of the ${shed.length} overloaded`);
  t.equal(overloaded, shed.length, 'every overloaded answer counted');

  // The shed bids again, one at a time, through a second gateway that never sheds at the frame (as a
  // client that moves on would): none of them had been recorded.
  const calm = await GatewayProcess.start({
    natsUrl: s.nats.url,
    secret: SECRET,
    args: ['--loop-lag-target-ms', '0'],
    env: s.nats.credentials('gateway'),
  });
  t.teardown(() => calm.close());
  const calmSockets = await Promise.all(
    bidders.map((b) => WsClient.connect(`${calm.wsUrl}?token=${b.token}&format=msgpack`, 'msgpack')),
  );
  t.teardown(() => Promise.all(calmSockets.map((ws) => ws.close())));
  let accepted = firstAnswers.filter((a) => a.m.status === 'accepted').length;
  const recordedBefore: number[] = [];
  const undecided: number[] = [];
  for (const { bid, ws } of shed) {
    const m = await calmSockets[sockets.indexOf(ws)].request({ type: 'bid', ...bid });
    if (m.type !== 'bid.result' || m.reason === 'overloaded') undecided.push(bid.bidId);
    if (m.duplicate) recordedBefore.push(bid.bidId);
    if (m.status === 'accepted') accepted++;
  }
  t.same(undecided, [], 'every shed bid decided on its retry');
  t.same(recordedBefore, [], 'no shed bid had been recorded (its retry is never a duplicate)');
  let counted = 0;
  for (const auction of auctions) {
    const reply = await s.nc.request(
      subjects.control(shardOfAuction(auction.id)),
      encode({ op: 'state', auctionId: auction.id }),
      { timeout: 5_000 },
    );
    counted += (decode(reply.data) as { auction: { bidCount: number } }).auction.bidCount;
  }
  t.equal(counted, accepted, 'the engines counted each accepted bid once');
});
