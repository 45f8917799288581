import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  decode,
  decodeLog,
  encode,
  encodeLog,
  EngineClient,
  subjects,
  type BidOutcome,
  type CommandResult,
  type LogBatch,
} from '../../protocol/index.js';
import { decodeResultBatch, encodeCommandBatch } from '../../protocol/binary/command-format.js';
import { EngineProcess, replayShard, startNats, TcpProxy } from '../../testkit/index.js';

type Status = { status: string; lastSeq: number; durableSeq: number; streamSeq: number };

async function setUp(t: { teardown: (fn: () => unknown) => void }, args: string[] = []) {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0',
    args: ['--engine-id', 'primary', ...args],
  });
  t.teardown(() => engine.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  return { nats, engine, nc, client: new EngineClient(nc, 3_000) };
}

async function createAuction(client: EngineClient, fields: Record<string, unknown> = {}): Promise<number> {
  const result = await client.sendOne(0, {
    type: 'create',
    sellerId: 1,
    startingPrice: 100,
    endsAt: Date.now() + 3_600_000,
    ...fields,
  });
  if (result.status !== 'accepted' || !('auctionId' in result))
    throw new Error(`create failed: ${JSON.stringify(result)}`);
  return result.auctionId;
}

/** Resolves with the first log event matching `match` published on shard 0's stream subject. */
function awaitEvent(
  nc: NatsConnection,
  match: (e: LogBatch['events'][number]) => boolean,
): Promise<{ t: number; event: LogBatch['events'][number] }> {
  return new Promise((resolve) => {
    const sub = nc.subscribe(subjects.log(0), {
      callback: (_err, msg) => {
        const batch = decodeLog(msg.data);
        const event = batch.events.find(match);
        if (event) {
          sub.unsubscribe();
          resolve({ t: batch.t, event });
        }
      },
    });
  });
}

t.test('acknowledged means durable: SIGKILL mid-load, restart, every acked bid is there', async (t) => {
  const { engine, nc, client } = await setUp(t, ['--snapshot-every-events', '500']);
  const auctions = await Promise.all(Array.from({ length: 10 }, () => createAuction(client)));
  const acked: { auctionId: number; bidderId: number; bidId: number; maxBid: number; seq: number }[] = [];
  let bidIds = 0;
  let killed = false;
  let unavailable = 0;
  const worker = async (w: number) => {
    for (let i = 0; !killed || i < 3; i++) {
      const auctionId = auctions[(w + i) % auctions.length];
      const bid = { auctionId, bidderId: 2 + ((w * 7 + i) % 40), bidId: ++bidIds, maxBid: 200 + i * 50 + w };
      const [result] = await client.send(0, [{ type: 'bid', ...bid }]);
      if (result.status === 'accepted') acked.push({ ...bid, seq: (result as BidOutcome).seq });
      else if (result.status === 'error' && result.code === 'unavailable') unavailable++;
      if (killed && result.status === 'error') return;
    }
  };
  const workers = Array.from({ length: 8 }, (_, w) => worker(w));
  while (acked.length < 1_500) await new Promise((resolve) => setImmediate(resolve));
  t.equal(await engine.kill(), 'SIGKILL', 'the engine died by SIGKILL under load');
  killed = true;
  await Promise.all(workers);
  t.ok(unavailable > 0, 'requests in flight at the kill were answered unavailable, not accepted');

  await engine.launch();
  // Every acknowledged bid is in the restarted engine's state: its retry is a duplicate of the same event.
  const retries: CommandResult[] = [];
  for (let i = 0; i < acked.length; i += 500) {
    retries.push(
      ...(await client.send(
        0,
        acked.slice(i, i + 500).map((b) => ({
          type: 'bid',
          auctionId: b.auctionId,
          bidderId: b.bidderId,
          bidId: b.bidId,
          maxBid: b.maxBid,
        })),
      )),
    );
  }
  const lost = acked.filter(
    (b, i) =>
      !(
        retries[i].status === 'accepted' &&
        (retries[i] as BidOutcome).duplicate &&
        (retries[i] as BidOutcome).seq === b.seq
      ),
  );
  t.equal(lost.length, 0, `all ${acked.length} acknowledged bids survived (lost: ${JSON.stringify(lost.slice(0, 3))})`);
  const seqs = new Set(acked.map((b) => b.seq));
  t.equal(seqs.size, acked.length, 'no two acknowledged bids share a sequence number');

  const live = await client.control<{ stateHash: string; lastSeq: number }>(0, { op: 'hash' });
  const { core: replayed } = await replayShard(nc, 0);
  t.equal(live.lastSeq, replayed.lastSeq, 'the engine is at the end of the stream');
  t.equal(live.stateHash, replayed.stateHash(), 'its state equals a fresh full replay of the stream');
  t.ok(engine.logLines('snapshot written').length > 0, 'snapshots were written along the way');
});

t.test(
  'fencing: another writer appends; the engine stops serving the shard and adds nothing after the fence',
  async (t) => {
    // A long lease: the deposed engine must not win the shard back during the test.
    const { engine, nc, client } = await setUp(t, ['--lease-ttl-ms', '60000', '--lease-renew-ms', '1000']);
    const auctionId = await createAuction(client);
    t.match(await client.bid(auctionId, 2, 1, 500), { status: 'accepted' });

    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info('AUCTION_LOG_0')).state.last_seq;
    const intruder: LogBatch = { v: 1, shard: 0, writer: 'intruder', t: Date.now(), events: [] };
    await jetstream(nc).publish(subjects.log(0), encodeLog(intruder), { expect: { lastSequence: before } });

    const fenced = await client.bid(auctionId, 3, 1, 900);
    t.match(
      fenced,
      { status: 'error', code: 'unavailable' },
      'the bid decided before the fence is not reported accepted',
    );
    t.match(
      await client.bid(auctionId, 3, 2, 900),
      { status: 'error', code: 'unavailable' },
      'nobody serves the shard now',
    );
    const own = decode(
      (await nc.request(subjects.nodeControl(0, 'primary'), encode({ op: 'status' }), { timeout: 2_000 })).data,
    ) as Status;
    t.match(own.status, /^(deposed|following)$/, 'the deposed engine follows the stream as a replica');
    const info = await jsm.streams.info('AUCTION_LOG_0');
    t.equal(
      info.state.last_seq,
      before + 1,
      "the intruder's message is the last one: nothing of the engine landed after it",
    );
    t.equal(
      engine.logLines('deposed: another writer appended to the shard log; stopped serving it').length,
      1,
      'the engine says so in its log',
    );
  },
);

t.test('idempotency survives restarts, from the log and from a snapshot', async (t) => {
  const { engine, client } = await setUp(t, ['--snapshot-every-events', '1']);
  const auctionId = await createAuction(client);
  const original = (await client.bid(auctionId, 2, 77, 500)) as BidOutcome;
  t.match(original, { status: 'accepted', duplicate: false });

  await engine.kill();
  await engine.launch();
  t.match(
    await client.bid(auctionId, 2, 77, 500),
    { status: 'accepted', duplicate: true, seq: original.seq, price: original.price },
    'after SIGKILL',
  );

  t.equal(await engine.signal('SIGTERM'), 0, 'a graceful stop exits 0');
  await engine.launch();
  t.match(
    await client.bid(auctionId, 2, 77, 500),
    { status: 'accepted', duplicate: true, seq: original.seq },
    'after SIGTERM',
  );
  t.equal(
    (await client.control<{ auction: { bidCount: number } }>(0, { op: 'state', auctionId })).auction.bidCount,
    1,
    'counted once',
  );
});

t.test('timers: a scheduled auction opens on time, soft close extends, the close names the winner', async (t) => {
  const { nc, client } = await setUp(t);
  const startsAt = Date.now() + 400;
  const endsAt = startsAt + 800;
  const opened = awaitEvent(nc, (e) => e.command.type === 'open');
  const auctionId = await createAuction(client, { startsAt, endsAt, softCloseSeconds: 2 });
  t.match(await client.bid(auctionId, 2, 1, 500), { status: 'rejected', reason: 'auction_not_open' });

  const open = await opened;
  t.ok(open.t >= startsAt, 'opened no earlier than startsAt');
  const closed = awaitEvent(nc, (e) => e.command.type === 'close' && e.command.auctionId === auctionId);
  const first = (await client.bid(auctionId, 2, 2, 500)) as BidOutcome;
  t.match(first, { status: 'accepted', leading: true });
  t.ok(first.endsAt > endsAt, 'a bid in the last 2 s pushed the end out');
  const second = (await client.bid(auctionId, 3, 1, 800)) as BidOutcome;
  t.match(second, { status: 'accepted', leading: true, outbidUserId: 2 });

  const close = await closed;
  t.ok(close.t >= second.endsAt, 'closed no earlier than the extended end');
  t.match(close.event.outcome, { status: 'accepted', winnerId: 3, price: 550 }, '500 + inc(500) = 550');
  t.match(await client.bid(auctionId, 2, 3, 5_000), { status: 'rejected', reason: 'auction_closed' });
});

t.test('malformed, truncated and oversized requests get an error; the engine and its state carry on', async (t) => {
  const { nc, client } = await setUp(t);
  const auctionId = await createAuction(client);
  await client.bid(auctionId, 2, 1, 500);
  const before = await client.control<{ stateHash: string; lastSeq: number }>(0, { op: 'hash' });

  const raw = async (data: Uint8Array) =>
    decode((await nc.request(subjects.commands(0), data, { timeout: 2_000 })).data) as { error?: { code: string } };
  t.match(
    await raw(new TextEncoder().encode('{"not":"msgpack"')),
    { error: { code: 'invalid_request' } },
    'garbage bytes',
  );
  const valid = encode({ commands: [{ type: 'bid', auctionId, bidderId: 3, bidId: 1, maxBid: 900 }] });
  t.match(await raw(valid.subarray(0, valid.length - 5)), { error: { code: 'invalid_request' } }, 'truncated msgpack');
  t.match(await raw(encode({ nope: 1 })), { error: { code: 'invalid_request' } }, 'no commands field');
  // Binary commands batches (what gateways send) are answered in binary, malformed ones too.
  const rawBinary = async (data: Uint8Array) =>
    decodeResultBatch((await nc.request(subjects.commands(0), data, { timeout: 2_000 })).data);
  const batch = encodeCommandBatch([{ type: 'bid', auctionId, bidderId: 3, bidId: 1, maxBid: 900 }]);
  const v2 = batch.slice();
  v2[2] = 2;
  t.match(
    await rawBinary(v2),
    { results: [], error: { code: 'invalid_request', message: /version 2: this reader knows version 1/ } },
    'a binary batch of an unknown version',
  );
  t.match(
    await rawBinary(batch.subarray(0, batch.length - 1)),
    { results: [], error: { code: 'invalid_request' } },
    'a truncated binary batch',
  );
  t.match(
    await raw(encode({ commands: new Array(2_000).fill({ type: 'bid' }) })),
    { error: { code: 'invalid_request' } },
    'too many commands',
  );
  const bad = await client.send(0, [
    { type: 'bid', auctionId, bidderId: 3, bidId: 2, maxBid: '900' },
    { type: 'bid', auctionId: String(auctionId), bidderId: 3, bidId: 3, maxBid: 900 },
    { type: 'create', sellerId: 1, startingPrice: 100, endsAt: Date.now() + 60_000, title: 'x'.repeat(201) },
    { type: 'open', auctionId },
    null,
  ]);
  t.same(
    bad.map((r) => r.status === 'error' && r.code),
    ['invalid_request', 'invalid_request', 'invalid_request', 'invalid_request', 'invalid_request'],
  );
  t.match(
    await client.bid(auctionId, 3, 4, -5),
    { status: 'rejected', reason: 'invalid_amount' },
    'a bad amount is decided (and logged) as a rejection',
  );

  const after = await client.control<{ stateHash: string; lastSeq: number }>(0, { op: 'hash' });
  t.equal(after.stateHash, before.stateHash, 'the state is unchanged');
  t.equal(after.lastSeq, before.lastSeq + 1, 'only the decided rejection took a sequence number');
  t.match(await client.control<Status>(0, { op: 'status' }), { status: 'serving' });
});

t.test(
  'an append whose PubAck never comes is not reported accepted; the engine resyncs and the retry counts once',
  async (t) => {
    const nats = await startNats();
    t.teardown(() => nats.close());
    // The engine reaches NATS through a proxy that can stall its outgoing bytes.
    const proxy = await TcpProxy.start('127.0.0.1', nats.port);
    t.teardown(() => proxy.close());
    const engine = await EngineProcess.start({
      natsUrl: proxy.url,
      shards: '0',
      args: [
        '--engine-id',
        'primary',
        '--append-timeout-ms',
        '300',
        '--lease-ttl-ms',
        '10000',
        '--lease-renew-ms',
        '2000',
      ],
    });
    t.teardown(() => engine.close());
    const nc = await connect({ servers: nats.url });
    t.teardown(() => nc.close());
    const client = new EngineClient(nc, 1_500);
    const auctionId = await createAuction(client);
    t.match(await client.bid(auctionId, 2, 1, 500), { status: 'accepted' });

    // The engine still receives the bid, decides it and publishes the batch, but
    // neither the batch nor any reply leaves it: the append's outcome is unknown.
    const appendFailed = engine.waitForRole(0, 'resyncing');
    proxy.hold('up');
    const stalled = await client.bid(auctionId, 3, 7, 900);
    await appendFailed;
    t.match(
      stalled,
      { status: 'error', code: 'unavailable' },
      'an unknown outcome is answered unavailable, never accepted',
    );

    // The stalled bytes flow again: the batch lands late; the engine resyncs from the stream.
    const resynced = engine.waitForRole(0, 'serving');
    proxy.release('up');
    await resynced;
    const retry = (await client.bid(auctionId, 3, 7, 900)) as BidOutcome;
    t.match(
      retry,
      { status: 'accepted', duplicate: true, leading: true },
      'the bid had landed: its retry is recognised',
    );
    const state = await client.control<{ auction: { bidCount: number; leaderId: number } }>(0, {
      op: 'state',
      auctionId,
    });
    t.match(state.auction, { bidCount: 2, leaderId: 3 }, 'and it counted once');
    const { core: replayed } = await replayShard(nc, 0);
    t.equal(
      (await client.control<{ stateHash: string }>(0, { op: 'hash' })).stateHash,
      replayed.stateHash(),
      'the engine equals a replay of the stream',
    );
  },
);
