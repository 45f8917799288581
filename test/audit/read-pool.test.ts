import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { Projection } from '../../audit/projection.js';
import { QueryError } from '../../audit/queries.js';
import { ReadPool, ReadsFull } from '../../audit/read-pool.js';
import { openShardDb, shardFile } from '../../audit/shard-db.js';
import { ApiError } from '../../gateway/errors.js';
import { AuditClient } from '../../gateway/read-model/audit-client.js';
import { decode, encode } from '../../protocol/index.js';
import { auditSubject } from '../../protocol/names.js';
import { eventually, startNats } from '../../testkit/index.js';

/** A data dir whose shard 0 file holds one auction (id 1, "brass lamp"), and a pool reading it. */
function pool(t: Test, size: number, pendingMax: number, nats?: { url: string }, shards = [0]) {
  const dataDir = mkdtempSync(join(tmpdir(), 'read-pool-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const db = openShardDb(shardFile(dataDir, 0));
  new Projection(db);
  db.prepare(
    `INSERT INTO auctions (id, seller_id, title, starting_price, reserve_price, starts_at, ends_at, soft_close_seconds,
      status, price, version, created_at, created_seq) VALUES (1, 7, 'brass lamp', 100, 0, 0, 5000, 0, 'open', 100, 1, 1, 1)`,
  ).run();
  db.prepare(`INSERT INTO auctions_fts (rowid, title, description) VALUES (1, 'brass lamp', '')`).run();
  db.close();
  const reads = new ReadPool({
    dataDir,
    size,
    pendingMax,
    logger: pino({ level: 'silent' }),
    natsUrl: nats?.url,
    shards,
  });
  t.teardown(() => reads.close());
  return reads;
}

t.test('reads are answered from the shard file on a worker; a query to fix rejects as QueryError', async (t) => {
  const reads = pool(t, 2, 8);
  t.match(await reads.read(0, { op: 'auction', auctionId: 1 }), {
    auction: { id: 1, title: 'brass lamp', sellerId: 7 },
  });
  t.match(await reads.read(0, { op: 'search', q: 'lam' }), { auctions: [{ id: 1 }], next: null });
  t.same(await reads.read(0, { op: 'auction', auctionId: 2 }), { auction: null });
  await t.rejects(reads.read(0, { op: 'search', cursor: 'garbage' }), QueryError);
  await t.rejects(
    reads.read(0, { op: 'search', sort: 'random' as 'price' }),
    new QueryError('sort must be ending_soon, newest or price'),
  );
  // A shard without a file is the worker's failure, not the client's, and the worker goes on.
  const failure = await reads.read(5, { op: 'auction', auctionId: 5 }).catch((e: Error) => e);
  t.ok(failure instanceof Error && !(failure instanceof QueryError), `a plain failure: ${String(failure)}`);
  t.match(await reads.read(0, { op: 'auction', auctionId: 1 }), { auction: { id: 1 } });
});

t.test(
  'past pendingMax waiting per worker, a read is refused with ReadsFull, and the waiting ones are answered',
  async (t) => {
    const reads = pool(t, 1, 2);
    const first = reads.read(0, { op: 'auction', auctionId: 1 });
    const second = reads.read(0, { op: 'bids', auctionId: 1 });
    await t.rejects(reads.read(0, { op: 'auction', auctionId: 1 }), ReadsFull);
    t.match(await first, { auction: { id: 1 } });
    t.same(await second, { bids: [], next: null });
    t.match(await reads.read(0, { op: 'auction', auctionId: 1 }), { auction: { id: 1 } }, 'room again once answered');
  },
);

t.test('a worker that dies fails its waiting reads and is replaced', async (t) => {
  const reads = pool(t, 1, 8);
  const waiting = reads.read(0, { op: 'search', q: 'brass' });
  // White-box: the pool's one worker, ended as a crash would end it.
  const slots = (reads as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots;
  void slots[0].worker.terminate();
  await t.rejects(waiting, /read worker exited/);
  await t.rejects(reads.read(0, { op: 'auction', auctionId: 1 }), ReadsFull, 'refused while none runs');
  await eventually(async () => {
    t.match(await reads.read(0, { op: 'auction', auctionId: 1 }), { auction: { id: 1 } });
  });
  t.pass('a replacement answers');
});

t.test('with a NATS URL the workers take the public queries themselves, and leave position alone', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const reads = pool(t, 2, 8, nats);
  await reads.ready();
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const ask = async (request: unknown, timeout = 2_000) =>
    decode((await nc.request(auditSubject(0), encode(request), { timeout })).data) as Record<string, unknown>;
  t.match(await ask({ op: 'search', q: 'brass' }), { auctions: [{ id: 1, title: 'brass lamp' }], next: null });
  t.match(await ask({ op: 'auction', auctionId: 1 }), { auction: { id: 1 } });
  t.match(await ask({ op: 'search', sort: 'random' }), { error: { code: 'invalid_request' } });
  t.match(await ask({ op: 'nonsense' }), { error: { code: 'invalid_request' } });
  await t.rejects(ask({ op: 'position' }, 500), "position is the writing thread's: no worker answers it");
});

t.test("a gateway turns the audit's overloaded into a 503 unavailable", async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  nc.subscribe(auditSubject(3), {
    callback: (_e, msg) => {
      msg.respond(encode({ error: { code: 'overloaded', message: '512 reads are waiting' } }));
    },
  });
  await nc.flush();
  const error = await new AuditClient(nc).query(3, { op: 'auction', auctionId: 3 }).catch((e: unknown) => e);
  t.ok(error instanceof ApiError, String(error));
  t.equal((error as ApiError).code, 'unavailable');
});

/** The query subjects each read worker's NATS connection subscribes to, from the server's monitoring endpoint. */
async function workerSubjects(monitorPort: number): Promise<string[][]> {
  const response = await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=1`);
  const { connections } = (await response.json()) as {
    connections: { name?: string; subscriptions_list?: string[] }[];
  };
  return connections
    .filter((c) => c.name?.startsWith('audit reads'))
    .map((c) => [...(c.subscriptions_list ?? [])].sort())
    .sort((a, b) => a[0].localeCompare(b[0]));
}

t.test(
  "each worker takes its own shards' queries from NATS, and covers for a dead one until its replacement does",
  async (t) => {
    const nats = await startNats();
    t.teardown(() => nats.close());
    const shards = [0, 1, 2, 3, 4, 5, 6, 7];
    const reads = pool(t, 2, 8, nats, shards);
    await reads.ready();
    const subjects = (list: number[]) => list.map((shard) => auditSubject(shard)).sort();
    const halves = [subjects([0, 2, 4, 6]), subjects([1, 3, 5, 7])].sort((a, b) => a[0].localeCompare(b[0]));
    // A search asks all eight at once: four each, not a random split of one queue group.
    t.same(await workerSubjects(nats.monitorPort), halves);
    t.same(reads.serving(), [
      [0, 2, 4, 6],
      [1, 3, 5, 7],
    ]);

    const nc = await connect({ servers: nats.url });
    t.teardown(() => nc.close());
    const slots = (reads as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots;
    void slots[0].worker.terminate();
    const expectSubjects = async (wanted: string[][], what: string) => {
      const now = await workerSubjects(nats.monitorPort);
      if (JSON.stringify(now) !== JSON.stringify(wanted)) throw new Error(`${what}: ${JSON.stringify(now)}`);
    };
    await eventually(() => expectSubjects([subjects(shards)], 'the survivor serves every shard'));
    t.pass('the survivor serves every shard');
    const answer = decode((await nc.request(auditSubject(0), encode({ op: 'auction', auctionId: 1 }))).data);
    t.match(answer, { auction: { id: 1 } }, "the dead worker's shard is answered meanwhile");
    await eventually(() => expectSubjects(halves, 'the replacement takes its shards back'));
    t.same(reads.serving(), [
      [0, 2, 4, 6],
      [1, 3, 5, 7],
    ]);
  },
);
