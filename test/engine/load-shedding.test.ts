import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { decodeLog, EngineClient, subjects, type BidOutcome, type CommandError } from '../../protocol/index.js';
import { EngineProcess, NatsProxy, replayShard, startNats } from '../../testkit/index.js';
import { freePort } from '../../testkit/ports.js';
import { inboxPrefix } from '../../protocol/names.js';

/**
 * The engine's own load shedding (issue 17, admission control): a request
 * that would wait behind a queue already `--queue-ms-max` old, or push the
 * queue past `--pending-commands-max`, is answered at once with `overloaded`
 * and a `retryAfterMs`, nothing of it decided or logged, so its retry with
 * the same bidIds counts once. The pipeline is stalled for real: the engine
 * reaches NATS through a proxy holding back the acknowledgements of its
 * appends (one append in flight at most) while command requests still pass.
 */
type Shed = CommandError & { retryAfterMs: number };

/** Once subscribed: a promise of the moment a batch holding this bidId is published on shard 0's log. */
async function logged(nc: NatsConnection, bidId: number): Promise<{ seen: Promise<void> }> {
  let resolve: () => void = () => undefined;
  const seen = new Promise<void>((r) => (resolve = r));
  const sub = nc.subscribe(subjects.log(0), {
    callback: (_error, msg) => {
      const batch = decodeLog(msg.data);
      if (batch.events.some((e) => e.command.type === 'bid' && e.command.bidId === bidId)) {
        sub.unsubscribe();
        resolve();
      }
    },
  });
  await nc.flush();
  return { seen };
}

const bid = (auctionId: number, bidderId: number, bidId: number, maxBid: number) => ({
  type: 'bid',
  auctionId,
  bidderId,
  bidId,
  maxBid,
});

t.test(
  'a request behind a queue too old or too long is shed with overloaded at once; its retry counts once',
  async (t) => {
    const nats = await startNats();
    t.teardown(() => nats.close());
    const proxy = await NatsProxy.start('127.0.0.1', nats.port);
    t.teardown(() => proxy.close());
    const metricsPort = await freePort();
    const engine = await EngineProcess.start({
      natsUrl: proxy.url,
      shards: '0',
      args: [
        ...['--engine-id', 'primary', '--metrics-port', String(metricsPort)],
        ...['--batches-in-flight-max', '1', '--queue-ms-max', '50', '--pending-commands-max', '4'],
        // The stall must not end the lease or time the append out: the test holds acks for a while.
        ...['--append-timeout-ms', '20000', '--lease-ttl-ms', '30000', '--lease-renew-ms', '5000'],
      ],
    });
    t.teardown(() => engine.close());
    const nc = await connect({ servers: nats.url });
    t.teardown(() => nc.close());
    const client = new EngineClient(nc, 20_000);
    const [created] = await client.send(0, [
      { type: 'create', sellerId: 1, startingPrice: 100, endsAt: Date.now() + 3_600_000 },
    ]);
    const auctionId = (created as { auctionId: number }).auctionId;
    const stallAppends = () => proxy.holdWhen((m) => m.subject.startsWith(`${inboxPrefix('engine')}.`));

    // 1. Too old. Bid 1's append is in flight with its ack held; bid 2 waits behind it.
    stallAppends();
    const first = await logged(nc, 1);
    const bid1 = client.send(0, [bid(auctionId, 2, 1, 500)]);
    await first.seen;
    const bid2 = client.send(0, [bid(auctionId, 3, 2, 600)]);
    // What is under test is the queue's age: bid 2 must have waited past --queue-ms-max (50 ms).
    await new Promise((resolve) => setTimeout(resolve, 250));
    const [old] = await client.send(0, [bid(auctionId, 4, 3, 5_000)]);
    t.match(old, { status: 'error', code: 'overloaded' }, 'shed while the pipeline is stalled: answered at once');
    t.ok((old as Shed).retryAfterMs >= 200, `retryAfterMs ${(old as Shed).retryAfterMs}: about the queue's age`);
    proxy.release();
    t.match(await bid1, [{ status: 'accepted' }]);
    t.match(await bid2, [{ status: 'accepted' }]);

    // 2. Too long: 1 in flight, 3 queued, 2 more would make 5 of --pending-commands-max 4.
    stallAppends();
    const fourth = await logged(nc, 4);
    const inFlight = client.send(0, [bid(auctionId, 5, 4, 800)]);
    await fourth.seen;
    const queued = client.send(
      0,
      [5, 6, 7].map((id) => bid(auctionId, id + 1, id, 800 + id * 100)),
    );
    const tooMany = await client.send(0, [bid(auctionId, 9, 8, 6_000), bid(auctionId, 10, 9, 7_000)]);
    t.match(tooMany, [{ code: 'overloaded' }, { code: 'overloaded' }], 'the whole request is shed');
    proxy.release();
    t.match(await inFlight, [{ status: 'accepted' }]);
    t.equal((await queued).length, 3);

    // The shed bids, sent again with the same bidIds, are decided now, and none is a duplicate.
    const retried = await client.send(0, [
      bid(auctionId, 4, 3, 5_000),
      bid(auctionId, 9, 8, 6_000),
      bid(auctionId, 10, 9, 7_000),
    ]);
    for (const r of retried) t.notOk((r as BidOutcome).duplicate, 'never decided before');
    t.match(retried, [{ status: 'accepted' }, { status: 'accepted' }, { status: 'accepted' }]);

    // The log holds each bid exactly once: nothing of a shed request was recorded.
    const { acceptedBids } = await replayShard(nc, 0);
    t.same(
      [...acceptedBids].map(([key, seqs]) => [key, seqs.length]).sort(),
      [
        ['10/9', 1],
        ['2/1', 1],
        ['3/2', 1],
        ['4/3', 1],
        ['5/4', 1],
        ['6/5', 1],
        ['7/6', 1],
        ['8/7', 1],
        ['9/8', 1],
      ],
      'every bid accepted once',
    );
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    t.match(metrics, /engine_commands_shed_total\{shard="0"\} 3\n/, 'three commands shed, counted');
    t.match(metrics, /engine_queue_seconds_count\{shard="0"\} [1-9]/, 'queue times observed');
  },
);
