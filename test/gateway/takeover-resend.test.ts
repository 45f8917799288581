import t from 'tap';
import { EngineProcess, WsClient } from '../../testkit/index.js';
import { shardOfAuction } from '../../protocol/index.js';
import { startSystem } from './fixture.js';

/**
 * A bid that reached a primary just before it stalled (SIGSTOP) is decided by
 * the replica that takes over, without waiting for the gateway's command
 * timeout: the replica's fence on the shard stream makes the gateway send
 * the bids in flight again (gateway/router.ts `primaryChanged`). The timeout
 * here is 30 s, longer than the test waits: before that, the bid was held by
 * the stopped process until it and came back `unavailable` (found by
 * `make chaos`: every engine pause cost clients 2-3 s).
 */
t.test('a bid stuck with a stopped primary is answered by the replica that takes over', async (t) => {
  const s = await startSystem(t, ['--command-timeout-ms', '30000']);
  const replica = await EngineProcess.start({
    natsUrl: s.nats.url,
    shards: '0-1',
    role: 'replica',
    env: s.nats.credentials('engine'),
    args: ['--engine-id', 'standby'],
  });
  t.teardown(() => replica.close());
  const seller = await s.user();
  const bidder = await s.user();
  const auction = await s.auction(seller.token);
  const shard = shardOfAuction(auction.id);
  const ws = await WsClient.connect(`${s.gateway.wsUrl}?token=${bidder.token}`);
  t.teardown(() => ws.close());
  t.match(await ws.request({ type: 'bid', auctionId: auction.id, bidId: 1, maxBid: 2_000 }), { status: 'accepted' });

  const from = replica.outputPosition;
  process.kill(s.engine.pid!, 'SIGSTOP');
  t.teardown(() => process.kill(s.engine.pid!, 'SIGCONT'));
  const answer = ws.request({ type: 'bid', auctionId: auction.id, bidId: 2, maxBid: 3_000 }, 25_000);
  const took = await replica.waitForRole(shard, 'serving', from);
  t.equal(took.shard, shard, 'the replica took the shard over');
  t.match(await answer, { type: 'bid.result', status: 'accepted', bidId: 2, leading: true }, 'decided by the replica');

  // The same bidId again (a client that never heard): the original answer, once.
  t.match(await ws.request({ type: 'bid', auctionId: auction.id, bidId: 2, maxBid: 3_000 }), {
    status: 'accepted',
    duplicate: true,
  });
});
