import t from 'tap';
import Database from 'better-sqlite3';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { shardFile } from '../../audit/shard-db.js';
import { verifyOnWorker } from '../../audit/verify-worker.js';
import { adminSubjects } from '../../protocol/names.js';
import type { VerifyResult } from '../../protocol/operations.js';
import { decode, encode, EngineClient, type BidOutcome, type CreateOutcome } from '../../protocol/index.js';
import { AuditProcess, BidLoad, EngineProcess, eventually, replayShard, startNats } from '../../testkit/index.js';

async function setUp(t: { teardown: (fn: () => unknown) => void }) {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0' });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  return { nats, engine, audit, nc, client: new EngineClient(nc, 3_000) };
}

const query = async <T>(nc: NatsConnection, request: Record<string, unknown>): Promise<T> =>
  decode((await nc.request('auction.audit.0', encode(request), { timeout: 3_000 })).data) as T;

/** Waits until the audit has applied the whole stream (position is a query; there is no push). */
async function caughtUp(nc: NatsConnection): Promise<void> {
  const { core } = await replayShard(nc, 0);
  await eventually(
    async () => {
      const position = await query<{ eventSeq: number }>(nc, { op: 'position' });
      if (position.eventSeq !== core.lastSeq)
        throw new Error(`audit at ${position.eventSeq}, stream at ${core.lastSeq}`);
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

async function create(client: EngineClient, fields: Record<string, unknown>): Promise<number> {
  const r = (await client.sendOne(0, {
    type: 'create',
    sellerId: 1,
    startingPrice: 100,
    endsAt: Date.now() + 3_600_000,
    ...fields,
  })) as CreateOutcome;
  if (r.status !== 'accepted') throw new Error(JSON.stringify(r));
  return r.auctionId;
}

t.test('SIGKILL the audit repeatedly while bids stream in: no gaps, no duplicates, verify passes', async (t) => {
  const { nc, client, audit } = await setUp(t);
  const auctions = await Promise.all([1, 2, 3].map(() => create(client, { title: 'x' })));
  const load = new BidLoad(nc, 0, auctions);
  load.start(4);
  for (let kill = 0; kill < 3; kill++) {
    await load.untilAnswered(250);
    await audit.kill();
    await load.untilAnswered(100);
    await audit.launch();
  }
  await load.untilAnswered(200);
  await load.stop();
  await caughtUp(nc);
  await audit.signal('SIGTERM');

  const db = new Database(shardFile(audit.dataDir, 0), { readonly: true });
  t.teardown(() => db.close());
  const { core } = await replayShard(nc, 0);
  const seqs = db
    .prepare('SELECT seq FROM bids UNION ALL SELECT seq FROM lifecycle WHERE seq > 0 ORDER BY seq')
    .pluck()
    .all() as number[];
  t.equal(seqs.length, core.lastSeq, `every one of ${core.lastSeq} events is in the file once`);
  t.ok(
    seqs.every((seq, i) => seq === i + 1),
    'no gaps and no duplicates: sequence numbers 1..N',
  );
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  const bidCount = db
    .prepare("SELECT COUNT(*) FROM bids WHERE status = 'accepted' AND duplicate = 0")
    .pluck()
    .get() as number;
  t.ok(bidCount >= load.acked.length, 'every acknowledged bid is recorded');
  const verify = await audit.verify();
  t.equal(verify.code, 0, `audit verify passes: ${verify.output.trim()}`);
});

/**
 * An operator's verification of a running audit's file runs on a worker
 * thread of its own with its own NATS connection (audit/verify-worker.ts): it
 * gives the command line's answer, and the running audit answers it so over
 * its admin subject.
 */
t.test('a verification on a worker thread proves the file, and names what is missing', async (t) => {
  const { nc, client, audit, nats } = await setUp(t);
  const auctionId = await create(client, { title: 'brass lamp' });
  const load = new BidLoad(nc, 0, [auctionId]);
  load.start(2);
  await load.untilAnswered(100);
  await load.stop();
  await caughtUp(nc);
  const { core } = await replayShard(nc, 0);

  const onWorker = await verifyOnWorker(nats.url, 0, shardFile(audit.dataDir, 0));
  t.match(onWorker, { shard: 0, ok: true, lastSeq: core.lastSeq, events: core.lastSeq });
  const cli = await audit.verify();
  t.equal(cli.code, 0, cli.output);
  t.match(cli.output, `${core.lastSeq} events to seq ${core.lastSeq}`, 'the command line says the same');
  const asked = decode(
    (await nc.request(adminSubjects.audit(0), encode({ op: 'verify' }), { timeout: 10_000 })).data,
  ) as VerifyResult;
  t.match(asked, { ok: true, lastSeq: core.lastSeq, runningHash: onWorker.runningHash }, 'and the running audit');

  const missing = await verifyOnWorker(nats.url, 0, `${audit.dataDir}/none.db`);
  t.match(missing, { ok: false, difference: /^no file / });
});

t.test('a corrupted row makes audit verify fail and name it', async (t) => {
  const { nc, client, audit } = await setUp(t);
  const auctionId = await create(client, { title: 'lamp' });
  await client.bid(auctionId, 2, 1, 500);
  const target = (await client.bid(auctionId, 3, 1, 300)) as BidOutcome;
  await caughtUp(nc);
  await audit.signal('SIGTERM');
  t.equal((await audit.verify()).code, 0, 'clean before');

  const db = new Database(shardFile(audit.dataDir, 0));
  db.prepare('UPDATE bids SET price_after = price_after + 1 WHERE seq = ?').run(target.seq);
  db.close();
  const verify = await audit.verify();
  t.equal(verify.code, 1, 'verify exits non-zero');
  t.match(
    verify.output,
    `bids seq ${target.seq}: price_after is ${target.price + 1} in the file, ${target.price} from the stream`,
  );
});

t.test('bid history pages completely and in order; a maximum is shown only to its bidder', async (t) => {
  const { nc, client } = await setUp(t);
  const auctionId = await create(client, { title: 'clock' });
  const bidders = [2, 3, 4];
  for (let i = 0; i < 25; i++) await client.bid(auctionId, bidders[i % 3], 100 + i, 200 + i * 60);
  await caughtUp(nc);
  type Page = { bids: { seq: number; bidderId: number; maxBid?: number }[]; next: number | null };
  const seen: Page['bids'] = [];
  let after: number | null = 0;
  for (let pages = 0; after !== null; pages++) {
    const page: Page = await query<Page>(nc, { op: 'bids', auctionId, after, limit: 10, viewerId: 3 });
    seen.push(...page.bids);
    after = page.next;
    t.ok(pages < 5, 'paging ends');
  }
  t.equal(seen.length, 25, 'every bid once');
  t.ok(
    seen.every((b, i) => i === 0 || b.seq > seen[i - 1].seq),
    'ordered by sequence',
  );
  t.ok(
    seen.filter((b) => b.bidderId === 3).every((b) => typeof b.maxBid === 'number'),
    'the viewer sees their own maxima',
  );
  t.ok(
    seen.filter((b) => b.bidderId !== 3).every((b) => b.maxBid === undefined),
    "and nobody else's",
  );
  t.match(
    await query(nc, { op: 'bids', auctionId, limit: 1000 }),
    { error: { code: 'invalid_request' } },
    'limits are enforced',
  );
});

t.test('search: words in title and description, status and seller filters, three sorts, cursor paging', async (t) => {
  const { nc, client } = await setUp(t);
  const now = Date.now();
  const ids = {
    bike: await create(client, {
      title: 'Red bicycle',
      description: 'vintage steel frame',
      endsAt: now + 50_000,
      startingPrice: 900,
      sellerId: 7,
    }),
    lamp: await create(client, {
      title: 'Desk lamp',
      description: 'brass, works with any bicycle dynamo',
      endsAt: now + 10_000,
      startingPrice: 300,
    }),
    chair: await create(client, {
      title: 'Oak chair',
      description: 'solid oak',
      endsAt: now + 30_000,
      startingPrice: 500,
      sellerId: 7,
    }),
    clock: await create(client, {
      title: 'Wall clock',
      description: 'quartz',
      endsAt: now + 20_000,
      startingPrice: 100,
    }),
  };
  await client.sendOne(0, { type: 'close', auctionId: ids.clock }, true);
  await caughtUp(nc);
  type Result = { auctions: { id: number }[]; next: string | null };
  const search = async (q: Record<string, unknown>) =>
    (await query<Result>(nc, { op: 'search', ...q })).auctions.map((a) => a.id);

  t.same(
    await search({ q: 'bicycle', sort: 'ending_soon' }),
    [ids.lamp, ids.bike],
    'a word in the title or the description',
  );
  t.same(await search({ q: 'bicy' }), [ids.lamp, ids.bike], 'the last word matches as a prefix');
  t.same(await search({ q: 'vintage steel' }), [ids.bike], 'every word must match');
  t.same(await search({ q: '"); DROP TABLE auctions; --' }), [], 'punctuation is only a separator');
  t.same(await search({ status: 'closed' }), [ids.clock], 'status filter');
  t.same(await search({ sellerId: 7, sort: 'price' }), [ids.chair, ids.bike], 'seller filter, price ascending');
  t.same(
    await search({ sort: 'ending_soon' }),
    [ids.clock, ids.lamp, ids.chair, ids.bike],
    'ending soon first (the closed clock ended now)',
  );
  t.same(
    await search({ sort: 'newest' }),
    [ids.clock, ids.chair, ids.lamp, ids.bike].sort((a, b) => b - a),
    'newest first',
  );

  const paged: number[] = [];
  let cursor: string | null = null;
  do {
    const page: Result = await query<Result>(nc, {
      op: 'search',
      sort: 'price',
      limit: 1,
      ...(cursor ? { cursor } : {}),
    });
    paged.push(...page.auctions.map((a) => a.id));
    cursor = page.next;
  } while (cursor);
  t.same(paged, [ids.clock, ids.lamp, ids.chair, ids.bike], 'cursor paging walks every result once, in order');
  t.match(await query(nc, { op: 'search', cursor: 'garbage' }), { error: { code: 'invalid_request' } });
  t.match(await query(nc, { op: 'search', sort: 'random' }), { error: { code: 'invalid_request' } });
});
