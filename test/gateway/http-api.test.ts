import t from 'tap';
import { Tokens } from '../../gateway/auth.js';
import type { Auction, AuctionPage, BidPage, BidResult, Notification } from '../../protocol/public.js';
import { eventually } from '../../testkit/index.js';
import { SECRET, startSystem, tokens, type ApiError, type HttpResponse, type Session } from './fixture.js';

type Registered = { userId: number; username: string };
type Notifications = { notifications: Notification[] };

t.test('the HTTP API of v1, every route and its errors', async (t) => {
  const s = await startSystem(t);
  const { http } = s;

  await t.test('users and sessions', async (t) => {
    const created = await http<Registered>('POST', '/v1/users', { username: 'carol', password: 'long enough' });
    t.equal(created.status, 201);
    t.match(created.body, { userId: Number, username: 'carol' });
    const taken = await http<ApiError>('POST', '/v1/users', { username: 'CAROL', password: 'something else' });
    t.equal(taken.status, 409);
    t.equal(taken.body.error.code, 'username_taken');
    for (const bad of [
      { username: 'ab', password: 'long enough' },
      { username: 'no spaces', password: 'long enough' },
      { username: 'dave', password: 'short' },
      { username: 5, password: 'long enough' },
      [],
      'text',
    ]) {
      const r = await http<ApiError>('POST', '/v1/users', bad);
      t.equal(r.status, 400, JSON.stringify(bad));
      t.equal(r.body.error.code, 'invalid_request');
    }
    const session = await http<Session>('POST', '/v1/sessions', { username: 'carol', password: 'long enough' });
    t.equal(session.status, 200);
    t.equal(session.body.userId, created.body.userId);
    t.ok(session.body.expiresAt > Date.now());
    t.equal(tokens.verify(session.body.token), created.body.userId, 'the token names the user');
    for (const wrong of [
      { username: 'carol', password: 'wrong password' },
      { username: 'nobody', password: 'long enough' },
    ]) {
      const r = await http<ApiError>('POST', '/v1/sessions', wrong);
      t.equal(r.status, 401);
      t.equal(r.body.error.code, 'invalid_credentials');
    }
  });

  const seller = await s.user();
  const alice = await s.user();
  const bob = await s.user();

  await t.test('creating auctions needs a valid token; the seller comes from it', async (t) => {
    const body = {
      title: 'Brass lamp',
      description: 'Old',
      startingPrice: 1_000,
      endsAt: Date.now() + 3_600_000,
      sellerId: 999,
    };
    t.equal((await http<ApiError>('POST', '/v1/auctions', body)).body.error.code, 'unauthenticated');
    const forged = `${seller.token.slice(0, -4)}AAAA`;
    const r1 = await http<ApiError>('POST', '/v1/auctions', body, forged);
    t.equal(r1.status, 401);
    t.equal(r1.body.error.code, 'unauthenticated');
    const otherSecret = new Tokens('another-secret-0123456789', 60_000).mint(seller.userId).token;
    t.equal((await http('POST', '/v1/auctions', body, otherSecret)).status, 401);
    const expired = tokens.mint(seller.userId, -1).token;
    const r2 = await http<ApiError>('POST', '/v1/auctions', body, expired);
    t.equal(r2.status, 401);
    t.match(r2.body.error.message, /expired/);
    const created = await http('POST', '/v1/auctions', body, seller.token);
    t.equal(created.status, 201);
    t.match(created.body, {
      id: Number,
      sellerId: seller.userId,
      title: 'Brass lamp',
      status: 'open',
      price: 1_000,
      bidCount: 0,
      hasReserve: false,
      leaderId: null,
    });
    for (const bad of [
      { ...body, title: '' },
      { ...body, title: 'x'.repeat(201) },
      { ...body, startingPrice: '10' },
      { ...body, endsAt: undefined },
      { ...body, imageUrl: 'javascript:alert(1)' },
      { ...body, startingPrice: -5 },
      { ...body, endsAt: Date.now() - 1_000 },
    ]) {
      const r = await http<ApiError>('POST', '/v1/auctions', bad, seller.token);
      t.equal(r.status, 400, JSON.stringify(bad));
      t.equal(r.body.error.code, 'invalid_request');
    }
    const wrongType = await http<ApiError>('POST', '/v1/auctions', 'title=x', seller.token, {
      'content-type': 'text/plain',
    });
    t.equal(wrongType.status, 415);
    t.equal(wrongType.body.error.code, 'unsupported_media_type');
    const notJson = await http<ApiError>('POST', '/v1/auctions', '{"title":', seller.token);
    t.equal(notJson.body.error.code, 'invalid_request');
    const huge = await http<ApiError>(
      'POST',
      '/v1/auctions',
      { ...body, description: 'x'.repeat(70_000) },
      seller.token,
    );
    t.equal(huge.status, 413);
    t.equal(huge.body.error.code, 'payload_too_large');
  });

  const auction = await s.auction(seller.token, {
    title: 'Walnut desk',
    description: 'Solid walnut',
    reservePrice: 5_000,
    softCloseSeconds: 30,
  });

  await t.test(
    'bids follow the proxy rules; rejections are 200s with a reason; retries return the original',
    async (t) => {
      const path = `/v1/auctions/${auction.id}/bids`;
      const first = await http<BidResult>('POST', path, { maxBid: 3_000, bidId: 1 }, alice.token);
      t.equal(first.status, 200);
      t.match(first.body, {
        bidId: 1,
        auctionId: auction.id,
        status: 'accepted',
        price: 1_000,
        leading: true,
        seq: Number,
      });
      const second = await http('POST', path, { maxBid: 2_000, bidId: 1 }, bob.token);
      t.match(
        second.body,
        { status: 'accepted', leading: false, price: 2_050 },
        'the leader stays at the challenger max plus one increment',
      );
      const retry = await http('POST', path, { maxBid: 3_000, bidId: 1 }, alice.token);
      t.match(
        retry.body,
        { status: 'accepted', seq: first.body.seq, duplicate: true },
        'the same bidId returns the original result',
      );
      t.match((await http('POST', path, { maxBid: 2_000, bidId: 2 }, bob.token)).body, {
        status: 'rejected',
        reason: 'bid_too_low',
      });
      t.match((await http('POST', path, { maxBid: 9_000, bidId: 3 }, seller.token)).body, {
        status: 'rejected',
        reason: 'seller_cannot_bid',
      });
      for (const [maxBid, bidId] of [
        [-100, 10],
        [10.5, 11],
        [2 ** 40, 12],
        [0, 13],
      ]) {
        t.match(
          (await http('POST', path, { maxBid, bidId }, bob.token)).body,
          { status: 'rejected', reason: 'invalid_amount' },
          `maxBid ${maxBid}`,
        );
      }
      t.match((await http('POST', '/v1/auctions/999999999/bids', { maxBid: 5_000, bidId: 20 }, bob.token)).body, {
        status: 'rejected',
        reason: 'auction_not_found',
      });
      for (const bad of [
        { maxBid: '5000', bidId: 21 },
        { maxBid: 5_000 },
        { maxBid: 5_000, bidId: -1 },
        { maxBid: 5_000, bidId: 1.5 },
        { maxBid: null, bidId: 22 },
      ]) {
        const r = await http<ApiError>('POST', path, bad, bob.token);
        t.equal(r.status, 400, JSON.stringify(bad));
        t.equal(r.body.error.code, 'invalid_request');
      }
      t.equal((await http('POST', path, { maxBid: 5_000, bidId: 23 })).status, 401, 'bidding needs a token');
      t.equal((await http('POST', '/v1/auctions/abc/bids', { maxBid: 5_000, bidId: 24 }, bob.token)).status, 400);
    },
  );

  await t.test('an auction and its bid history; a maximum is shown only to its bidder', async (t) => {
    await eventually(
      async () => {
        const r = await http<Auction>('GET', `/v1/auctions/${auction.id}`);
        if (r.body.bidCount !== 2) throw new Error(JSON.stringify(r.body));
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    const details = await http<Auction>('GET', `/v1/auctions/${auction.id}`);
    t.match(details.body, {
      id: auction.id,
      title: 'Walnut desk',
      description: 'Solid walnut',
      price: 2_050,
      leaderId: alice.userId,
      hasReserve: true,
      reserveMet: false,
      bidCount: 2,
    });
    t.notOk('reservePrice' in details.body, 'the reserve itself is never shown');
    t.equal((await http('GET', '/v1/auctions/1048576001')).status, 404);
    t.equal((await http<ApiError>('GET', '/v1/auctions/0')).body.error.code, 'invalid_request');
    const asAlice = await http<BidPage>('GET', `/v1/auctions/${auction.id}/bids`, undefined, alice.token);
    t.equal(asAlice.status, 200);
    const mine = asAlice.body.bids.filter((b) => b.bidderId === alice.userId && b.status === 'accepted');
    t.ok(mine.length > 0 && mine.every((b) => b.maxBid === 3_000), 'alice sees her own maximum');
    t.ok(
      asAlice.body.bids.filter((b) => b.bidderId !== alice.userId).every((b) => !('maxBid' in b)),
      "and nobody else's",
    );
    const anonymous = await http<BidPage>('GET', `/v1/auctions/${auction.id}/bids?limit=2`);
    t.ok(anonymous.body.bids.every((b) => !('maxBid' in b)));
    t.equal(anonymous.body.bids.length, 2);
    const rest = await http<BidPage>('GET', `/v1/auctions/${auction.id}/bids?after=${anonymous.body.next}&limit=100`);
    t.ok(
      rest.body.bids.every((b) => b.seq > anonymous.body.next!),
      'paging by seq',
    );
    t.equal((await http('GET', `/v1/auctions/${auction.id}/bids?limit=1000`)).status, 400);
    t.equal((await http('GET', `/v1/auctions/1048576001/bids`)).status, 404);
  });

  await t.test('search merges every shard by the same order, with cursors', async (t) => {
    const ends = Date.now() + 7_200_000;
    const ids: number[] = [];
    // A creation lands on a random shard: six can all land on one (1 in 32), so
    // this goes on until both shards hold some, bounded well past any bad luck.
    for (let i = 0; ids.length < 6 || new Set(ids.map((id) => id % 1024)).size < 2; i++) {
      if (i === 40) throw new Error('40 creations all on one shard');
      ids.push((await s.auction(seller.token, { title: `Zebra print ${i}`, endsAt: ends + i * 1_000 })).id);
    }
    t.ok(new Set(ids.map((id) => id % 1024)).size === 2, 'created on both shards');
    await eventually(
      async () => {
        const r = await http<AuctionPage>('GET', '/v1/auctions?q=zebra&limit=100');
        if (r.body.auctions.length !== ids.length) throw new Error(`found ${r.body.auctions.length}`);
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: HttpResponse<AuctionPage> = await http(
        'GET',
        `/v1/auctions?q=zebra&sort=ending_soon&limit=4${cursor ? `&cursor=${cursor}` : ''}`,
      );
      t.equal(page.status, 200);
      seen.push(...page.body.auctions.map((a) => a.id));
      cursor = page.body.next;
    } while (cursor);
    t.same(seen, ids, 'all of them, ending soonest first, across pages and shards');
    const newest = await http<AuctionPage>(
      'GET',
      `/v1/auctions?q=zebra&sort=newest&limit=3&sellerId=${seller.userId}&status=open`,
    );
    t.same(
      newest.body.auctions.map((a) => a.id),
      ids.slice().reverse().slice(0, 3),
    );
    t.equal((await http('GET', '/v1/auctions?sort=cheapest')).status, 400);
    t.equal((await http('GET', '/v1/auctions?status=sold')).status, 400);
    t.equal((await http('GET', '/v1/auctions?cursor=notacursor')).status, 400);
  });

  await t.test('notifications and acknowledgement', async (t) => {
    const outbid = await http<BidResult>(
      'POST',
      `/v1/auctions/${auction.id}/bids`,
      { maxBid: 10_000, bidId: 30 },
      bob.token,
    );
    t.match(outbid.body, { status: 'accepted', leading: true });
    let list: Notification[] = [];
    await eventually(
      async () => {
        list = (await http<Notifications>('GET', '/v1/me/notifications', undefined, alice.token)).body.notifications;
        if (!list.some((n) => n.kind === 'outbid')) throw new Error('no outbid yet');
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    const n = list.find((x) => x.kind === 'outbid')!;
    t.match(n, { id: Number, kind: 'outbid', auctionId: auction.id, price: Number, key: String });
    t.equal(
      (await http<Notifications>('GET', `/v1/me/notifications?after=${n.id}`, undefined, alice.token)).body
        .notifications.length,
      0,
      'after skips it',
    );
    t.equal((await http('POST', '/v1/me/notifications/ack', { upTo: n.id }, alice.token)).status, 204);
    t.same(
      (await http<Notifications>('GET', '/v1/me/notifications', undefined, alice.token)).body.notifications,
      [],
      'acknowledged ones are gone',
    );
    t.equal((await http('POST', '/v1/me/notifications/ack', { upTo: 'all' }, alice.token)).status, 400);
    t.equal((await http('GET', '/v1/me/notifications')).status, 401);
  });

  await t.test('health, metrics, unknown paths and methods', async (t) => {
    const health = await http('GET', '/healthz');
    t.equal(health.status, 200);
    t.match(health.body, { status: 'ok', nats: true });
    const metrics = await http('GET', '/metrics');
    t.match(metrics.body, /gateway_bids_total\{outcome="accepted"\} \d+/);
    t.match(metrics.body, /gateway_command_duration_seconds_bucket/);
    t.match(metrics.body, /gateway_websocket_connections/);
    t.equal((await http<ApiError>('GET', '/v2/nothing')).body.error.code, 'not_found');
    t.equal((await http<ApiError>('DELETE', `/v1/auctions/${auction.id}`)).body.error.code, 'method_not_allowed');
  });

  await t.test('nothing refused above changed the engine state', async (t) => {
    const before = await s.stateHashes();
    await http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 'lots', bidId: 40 }, bob.token);
    await http(
      'POST',
      `/v1/auctions/${auction.id}/bids`,
      { maxBid: 50_000, bidId: 41 },
      tokens.mint(bob.userId, -1).token,
    );
    await http(
      'POST',
      `/v1/auctions/${auction.id}/bids`,
      { maxBid: 50_000, bidId: 42, bidderId: alice.userId },
      `${bob.token}x`,
    );
    await http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: -1, bidId: 43 }, bob.token);
    await http('POST', `/v1/auctions/${auction.id}/bids`, '{', bob.token);
    t.same(await s.stateHashes(), before);
  });
  t.equal(SECRET.length > 16, true);
});

t.test('rate limits per user and per address', async (t) => {
  const s = await startSystem(t, ['--user-commands-per-sec', '2', '--address-auth-per-sec', '2']);
  const seller = await s.user();
  const auction = await s.auction(tokens.mint(seller.userId).token);
  const bidder = tokens.mint(424242).token;
  const results = [];
  for (let i = 1; i <= 8; i++)
    results.push(
      (
        await s.http<BidResult>(
          'POST',
          `/v1/auctions/${auction.id}/bids`,
          { maxBid: 1_000 + i * 100, bidId: i },
          bidder,
        )
      ).body,
    );
  t.ok(
    results.some((r) => r.status === 'rejected' && r.reason === 'rate_limited'),
    'a fast bidder is refused with rate_limited',
  );
  t.ok(results.some((r) => r.status === 'accepted'));
  // Sent at once, as a guesser would: one at a time, each hash (~0.4 s at N=2^17) lets the bucket refill.
  const logins = await Promise.all(
    Array.from(
      { length: 8 },
      async () => (await s.http('POST', '/v1/sessions', { username: 'nobody', password: 'whatever1' })).status,
    ),
  );
  t.ok(logins.includes(429), 'logins from one address are limited');
});
