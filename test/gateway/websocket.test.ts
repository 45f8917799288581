import t from 'tap';
import { pack } from 'msgpackr';
import type { Auction, BidResult } from '../../protocol/public.js';
import { GatewayProcess, WsClient, type WsMessage } from '../../testkit/index.js';
import { SECRET, startSystem, tokens } from './fixture.js';

const isState = (auctionId: number) => (m: WsMessage) => m.type === 'auction.state' && m.auctionId === auctionId;

/** Versions of an auction's states as a client received them, in order. */
const versions = (client: WsClient, auctionId: number) =>
  client.messages.filter(isState(auctionId)).map((m) => m.version as number);

t.test(
  'a bidding war over WebSocket (JSON and msgpack) and HTTP: proxy rules hold and every watcher ends on the same version',
  async (t) => {
    const s = await startSystem(t);
    const seller = await s.user();
    const auction = await s.auction(seller.token, { startingPrice: 1_000 });
    const [alice, bob, carol] = [await s.user(), await s.user(), await s.user()];
    const aliceWs = await WsClient.connect(s.gateway.wsUrl, 'json');
    t.teardown(() => aliceWs.close());
    const bobWs = await WsClient.connect(`${s.gateway.wsUrl}?token=${bob.token}&format=msgpack`, 'msgpack');
    t.teardown(() => bobWs.close());
    t.match(await aliceWs.request({ type: 'auth', token: alice.token }), { type: 'ok', userId: alice.userId });
    const watchers = await Promise.all([1, 2, 3].map(() => WsClient.connect(s.gateway.wsUrl)));
    t.teardown(() => Promise.all(watchers.map((w) => w.close())));
    for (const client of [aliceWs, bobWs, ...watchers]) {
      t.match(await client.request({ type: 'subscribe', auctionIds: [auction.id] }), { type: 'ok' });
      t.ok(client.messages.some(isState(auction.id)), 'the current state arrives at once');
    }

    // Each bidder raises in turn; the expected outcome follows DESIGN.md's proxy rules.
    const answers: Record<string, unknown>[] = [];
    for (let round = 1; round <= 6; round++) {
      const maxima = { alice: 1_000 + round * 700, bob: 1_100 + round * 650, carol: 1_050 + round * 600 };
      answers.push(await aliceWs.request({ type: 'bid', auctionId: auction.id, maxBid: maxima.alice, bidId: round }));
      answers.push(await bobWs.request({ type: 'bid', auctionId: auction.id, maxBid: maxima.bob, bidId: round }));
      answers.push(
        (
          await s.http<BidResult>(
            'POST',
            `/v1/auctions/${auction.id}/bids`,
            { maxBid: maxima.carol, bidId: round },
            carol.token,
          )
        ).body,
      );
    }
    for (const a of answers) t.match(a, { auctionId: auction.id, status: /accepted|rejected/ });
    t.match(answers[0], { type: 'bid.result', status: 'accepted', price: 1_000, leading: true });
    t.match(
      answers[1],
      { type: 'bid.result', status: 'accepted', leading: true, price: 1_750 },
      'bob (1,750) over alice (1,700): min(1,750, 1,700 + 50)',
    );
    t.match(answers[2], { status: 'rejected', reason: 'bid_too_low' }, 'carol (1,650) below 1,750 + 50');
    // In the last round alice (5,200) beats bob (5,000) and carol (4,650): price = 5,000 + 100.
    const last = answers.filter((a) => a.status === 'accepted').at(-1)!;
    const final = await s.http<Auction>('GET', `/v1/auctions/${auction.id}`);
    const state = final.body;
    t.equal(state.leaderId, alice.userId);
    t.equal(last.price, 5_100);
    const finalVersion = last.version as number;
    for (const client of [aliceWs, bobWs, ...watchers]) {
      await client.waitFor((m) => isState(auction.id)(m) && m.version === finalVersion);
      const seen = versions(client, auction.id);
      t.same(
        seen,
        [...seen].sort((a, b) => a - b),
        'versions never go backwards',
      );
      t.match(client.messages.filter(isState(auction.id)).at(-1), {
        price: 5_100,
        leaderId: alice.userId,
        version: finalVersion,
      });
    }
    t.ok(
      bobWs.messages.some((m) => m.type === 'notification' && m.kind === 'outbid'),
      'bob heard he was outbid',
    );
  },
);

t.test(
  'a watcher that drops during a burst reconnects to the latest version, never seeing one go backwards',
  async (t) => {
    const s = await startSystem(t);
    const seller = await s.user();
    const auction = await s.auction(seller.token);
    const bidders = [tokens.mint(7_001).token, tokens.mint(7_002).token];
    let watcher = await WsClient.connect(s.gateway.wsUrl);
    await watcher.request({ type: 'subscribe', auctionIds: [auction.id] });
    const seen: number[] = versions(watcher, auction.id);
    let lastVersion = 0;
    const burst = (async () => {
      for (let i = 1; i <= 60; i++) {
        const r = await s.http<BidResult>(
          'POST',
          `/v1/auctions/${auction.id}/bids`,
          { maxBid: 1_000 + i * 100, bidId: i },
          bidders[i % 2],
        );
        if (r.body.status === 'accepted') lastVersion = Math.max(lastVersion, r.body.version!);
      }
    })();
    await watcher.waitFor((m) => isState(auction.id)(m) && (m.version as number) >= 5);
    seen.push(...versions(watcher, auction.id));
    await watcher.close();
    watcher = await WsClient.connect(s.gateway.wsUrl, 'msgpack');
    t.teardown(() => watcher.close());
    await watcher.request({ type: 'subscribe', auctionIds: [auction.id] });
    await burst;
    await watcher.waitFor((m) => isState(auction.id)(m) && m.version === lastVersion);
    const after = versions(watcher, auction.id);
    t.ok(after[0] >= Math.max(...seen), 'the first state after reconnecting is not older than anything seen before');
    t.same(
      after,
      [...after].sort((a, b) => a - b),
      'monotonic after reconnecting',
    );
    t.equal(after.at(-1), lastVersion, 'ends at the latest version');
  },
);

t.test(
  'bad input over WebSocket: the right error, the connection survives, the engine state does not change',
  async (t) => {
    const s = await startSystem(t);
    const seller = await s.user();
    const auction = await s.auction(seller.token);
    const user = await s.user();
    const ws = await WsClient.connect(s.gateway.wsUrl);
    t.teardown(() => ws.close());
    const bin = await WsClient.connect(s.gateway.wsUrl, 'msgpack');
    t.teardown(() => bin.close());
    const before = await s.stateHashes();

    const errorAfter = async (client: WsClient, send: () => void) => {
      const from = client.messages.length;
      send();
      return client.waitFor((m) => m.type === 'error', 5_000, from);
    };
    t.match(await errorAfter(ws, () => ws.sendRaw('{"type":')), { code: 'invalid_request', message: /JSON/ });
    t.match(await errorAfter(ws, () => ws.sendRaw('[1,2]')), { code: 'invalid_request' });
    t.match(await errorAfter(bin, () => bin.sendRaw(Buffer.from([0xc1, 0xff, 0x00]))), {
      code: 'invalid_request',
      message: /msgpack/,
    });
    t.match(await errorAfter(bin, () => bin.sendRaw(pack('just a string'))), { code: 'invalid_request' });
    t.match(await ws.request({ type: 'launch' }), {
      type: 'error',
      code: 'invalid_request',
      message: /unknown message type/,
    });
    t.match(await ws.request({ type: 'bid', auctionId: auction.id, maxBid: 5_000, bidId: 1 }), {
      type: 'error',
      code: 'unauthenticated',
    });
    t.match(await ws.request({ type: 'auth', token: `${user.token}x` }), { type: 'error', code: 'unauthenticated' });
    t.match(await ws.request({ type: 'auth', token: tokens.mint(user.userId, -1).token }), {
      type: 'error',
      code: 'unauthenticated',
      message: /expired/,
    });
    t.match(await ws.request({ type: 'auth', token: 42 }), { type: 'error', code: 'unauthenticated' });
    t.match(await ws.request({ type: 'auth', token: user.token }), { type: 'ok', userId: user.userId });
    t.match(
      await ws.request({ type: 'auth', token: tokens.mint(user.userId + 1).token }),
      { type: 'error', code: 'forbidden' },
      'a connection cannot switch users',
    );
    for (const bad of [
      { maxBid: '100', bidId: 2 },
      { maxBid: 100, bidId: '2' },
      { maxBid: 100 },
      { maxBid: 100, bidId: 2, auctionId: -1 },
      { maxBid: true, bidId: 3 },
    ]) {
      t.match(
        await ws.request({ type: 'bid', auctionId: auction.id, ...bad }),
        { type: 'error', code: 'invalid_request' },
        JSON.stringify(bad),
      );
    }
    t.match(
      await ws.request({ type: 'bid', auctionId: auction.id, maxBid: 5_000, bidId: 9, bidderId: seller.userId }),
      { type: 'bid.result', status: 'accepted' },
      'a bidderId in the body is ignored',
    );
    const afterOwnBid = await s.stateHashes();
    t.notSame(afterOwnBid, before, 'a valid bid does change the state (the check below can fail)');
    const leaderNow = (await s.http<Auction>('GET', `/v1/auctions/${auction.id}`)).body;
    t.not(leaderNow.leaderId, seller.userId);
    t.match(await bin.request({ type: 'auth', token: user.token }), { type: 'ok' });
    for (const [maxBid, bidId] of [
      [Number.NaN, 20],
      [-5, 21],
      [12.5, 22],
      [2 ** 53, 23],
      [Number.POSITIVE_INFINITY, 24],
    ]) {
      t.match(
        await bin.request({ type: 'bid', auctionId: auction.id, maxBid, bidId }),
        { type: 'bid.result', status: 'rejected', reason: 'invalid_amount' },
        `maxBid ${maxBid}`,
      );
    }
    t.match(await ws.request({ type: 'subscribe', auctionIds: 'all' }), { type: 'error', code: 'invalid_request' });
    t.match(await ws.request({ type: 'subscribe', auctionIds: Array.from({ length: 101 }, (_, i) => i + 1) }), {
      type: 'error',
      code: 'invalid_request',
    });
    t.match(await ws.request({ type: 'subscribe', auctionIds: [auction.id + 1024 * 5000] }), {
      type: 'error',
      code: 'not_found',
    });
    t.match(await errorAfter(ws, () => ws.send({ type: 'ping', rid: { nested: true } })), {
      code: 'invalid_request',
      message: /rid/,
    });
    t.same(await s.stateHashes(), afterOwnBid, 'nothing refused changed the engine state');
    t.match(await ws.request({ type: 'ping' }), { type: 'pong' }, 'the JSON connection is still open');
    t.match(await bin.request({ type: 'ping' }), { type: 'pong' }, 'the msgpack connection is still open');

    const big = await WsClient.connect(s.gateway.wsUrl);
    big.sendRaw(JSON.stringify({ type: 'ping', pad: 'x'.repeat(20_000) }));
    // uWS drops the TCP connection of a peer that exceeds maxPayloadLength (the client sees 1006).
    t.ok([1006, 1009].includes((await big.waitClosed()).code), 'an oversized frame closes the connection');

    const refused = await WsClient.connect(`${s.gateway.wsUrl}?token=forged.token.here`).then(
      () => null,
      (error: { statusCode?: number }) => error,
    );
    t.equal(refused?.statusCode, 401, 'a forged ?token= refuses the upgrade');
  },
);

t.test('a peer that floods is rate limited, then cut off', async (t) => {
  const s = await startSystem(t, ['--connection-messages-per-sec', '5']);
  const ws = await WsClient.connect(s.gateway.wsUrl);
  for (let i = 0; i < 12; i++) ws.send({ type: 'ping' });
  await ws.waitFor((m) => m.type === 'error' && m.code === 'rate_limited');
  for (let i = 0; i < 100 && !ws.closed; i++) ws.send({ type: 'ping' });
  t.equal((await ws.waitClosed()).code, 1008, 'closed as a flood');
  const polite = await WsClient.connect(s.gateway.wsUrl);
  t.teardown(() => polite.close());
  t.match(await polite.request({ type: 'ping' }), { type: 'pong' }, 'other connections are unaffected');
});

t.test('two gateways share users, tokens and live state', async (t) => {
  const s = await startSystem(t);
  const second = await GatewayProcess.start({
    natsUrl: s.nats.url,
    secret: SECRET,
    env: s.nats.credentials('gateway'),
  });
  t.teardown(() => second.close());
  const seller = await s.user();
  const auction = await s.auction(seller.token);
  const other = await WsClient.connect(`${second.wsUrl}?token=${seller.token}`);
  t.teardown(() => other.close());
  await other.request({ type: 'subscribe', auctionIds: [auction.id] });
  const bid = await s.http<BidResult>(
    'POST',
    `/v1/auctions/${auction.id}/bids`,
    { maxBid: 2_000, bidId: 1 },
    tokens.mint(9_999).token,
  );
  await other.waitFor((m) => isState(auction.id)(m) && m.version === bid.body.version);
  t.pass('an update made through one gateway reaches a watcher on the other');
});
