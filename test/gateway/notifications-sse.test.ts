import t from 'tap';
import type { StateFrame } from '../../gateway/public-shapes.js';
import type { Notification } from '../../protocol/public.js';
import { WsClient, type WsMessage } from '../../testkit/index.js';
import { startSystem, type ApiError } from './fixture.js';

/** An `event: state` of an SSE stream: its id and its data. */
type SseEvent = { id: string; data: StateFrame };

const outbidOn = (auctionId: number) => (m: WsMessage) =>
  m.type === 'notification' && m.kind === 'outbid' && m.auctionId === auctionId;

t.test('outbid while offline: delivered after reconnecting, again until acknowledged, never after', async (t) => {
  const s = await startSystem(t);
  const seller = await s.user();
  const alice = await s.user();
  const bob = await s.user();
  const auction = await s.auction(seller.token);
  t.match((await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 2_000, bidId: 1 }, alice.token)).body, {
    status: 'accepted',
    leading: true,
  });
  // Alice is offline; bob outbids her.
  t.match((await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 5_000, bidId: 1 }, bob.token)).body, {
    status: 'accepted',
    leading: true,
  });

  const first = await WsClient.connect(s.gateway.wsUrl);
  await first.request({ type: 'auth', token: alice.token });
  const n1 = await first.waitFor(outbidOn(auction.id));
  t.match(n1, { id: Number, kind: 'outbid', auctionId: auction.id, price: 2_050, key: String });
  await first.close();

  const second = await WsClient.connect(`${s.gateway.wsUrl}?token=${alice.token}`);
  const n2 = await second.waitFor(outbidOn(auction.id));
  t.equal(n2.id, n1.id, 'the unacknowledged notification comes again, with the same id');
  t.match(await second.request({ type: 'notifications.ack', upTo: n1.id }), { type: 'ok' });

  // Live push while connected: outbid again after alice raises.
  t.match((await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 8_000, bidId: 2 }, alice.token)).body, {
    leading: true,
  });
  t.match((await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 9_000, bidId: 2 }, bob.token)).body, {
    leading: true,
  });
  const live = await second.waitFor((m) => outbidOn(auction.id)(m) && (m.id as number) > (n1.id as number));
  t.match(live, { price: 8_100 }, 'pushed live when online (8,000 + 100)');
  t.match(await second.request({ type: 'notifications.ack', upTo: live.id }), { type: 'ok' });
  await second.close();

  const third = await WsClient.connect(s.gateway.wsUrl);
  t.teardown(() => third.close());
  // `ok` to auth comes after every unacknowledged notification was sent again.
  await third.request({ type: 'auth', token: alice.token });
  t.notOk(
    third.messages.some((m) => m.type === 'notification'),
    'nothing acknowledged comes back',
  );
  t.same(
    (await s.http<{ notifications: Notification[] }>('GET', '/v1/me/notifications', undefined, alice.token)).body
      .notifications,
    [],
  );
});

t.test('the end of an auction: won, lost and auction_ended, each to the right user', async (t) => {
  const s = await startSystem(t);
  const seller = await s.user();
  const winner = await s.user();
  const loser = await s.user();
  const auction = await s.auction(seller.token, { endsAt: Date.now() + 1_500 });
  await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 1_500, bidId: 1 }, loser.token);
  await s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 3_000, bidId: 1 }, winner.token);
  const clients = await Promise.all(
    [seller, winner, loser].map((u) => WsClient.connect(`${s.gateway.wsUrl}?token=${u.token}`)),
  );
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const [sellerWs, winnerWs, loserWs] = clients;
  const ended = (kind: string) => (m: WsMessage) =>
    m.type === 'notification' && m.kind === kind && m.auctionId === auction.id;
  t.match(await winnerWs.waitFor(ended('won')), { price: 1_550, winnerId: winner.userId, status: 'closed' });
  t.match(await loserWs.waitFor(ended('lost')), { price: 1_550, winnerId: winner.userId });
  t.match(await sellerWs.waitFor(ended('auction_ended')), { price: 1_550, winnerId: winner.userId, status: 'closed' });
  t.notOk(winnerWs.messages.some(ended('lost')), 'the winner did not lose');
});

/** Reads SSE events from a streaming fetch until `until` says stop. */
async function readSse(
  url: string,
  headers: Record<string, string>,
  until: (events: SseEvent[]) => boolean,
  onOpen: () => void = () => {},
): Promise<{ status: number; events: SseEvent[]; body: ApiError | null }> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  if (response.status !== 200) return { status: response.status, events, body: (await response.json()) as ApiError };
  onOpen();
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  let buffer = '';
  while (!until(events)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += Buffer.from(value).toString();
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const id = /^id: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (id && data && /^event: state$/m.test(block)) events.push({ id, data: JSON.parse(data) as StateFrame });
    }
  }
  controller.abort();
  return { status: 200, events, body: null };
}

t.test('SSE: the current state at once, then every newer one; Last-Event-ID resumes', async (t) => {
  const s = await startSystem(t);
  const seller = await s.user();
  const bidder = await s.user();
  const auction = await s.auction(seller.token);
  const url = `${s.gateway.url}/v1/auctions/${auction.id}/events`;
  let bids = 0;
  const bid = async () =>
    s.http('POST', `/v1/auctions/${auction.id}/bids`, { maxBid: 2_000 + ++bids * 500, bidId: bids }, bidder.token);
  const first = await readSse(
    url,
    {},
    (events) => events.length >= 3,
    () => {
      void bid().then(bid);
    },
  );
  t.equal(first.events[0].data.version, auction.version, 'the current state first');
  t.same(
    first.events.map((e) => Number(e.id)),
    first.events.map((e) => e.data.version),
    'event ids are versions',
  );
  t.ok(first.events[2].data.version > first.events[1].data.version);
  const lastSeen = first.events[2].id;

  // Resuming from the latest version sends nothing until a newer one exists.
  const resumed = await readSse(
    url,
    { 'Last-Event-ID': lastSeen },
    (events) => events.length >= 1,
    () => void bid(),
  );
  t.ok(Number(resumed.events[0].id) > Number(lastSeen), 'the first event after resuming is newer than Last-Event-ID');
  const missing = await readSse(`${s.gateway.url}/v1/auctions/${auction.id + 1024 * 1000}/events`, {}, () => true);
  t.equal(missing.status, 404);
  t.equal(missing.body!.error.code, 'not_found');
});
