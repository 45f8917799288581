import { parentPort, workerData } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';
import { AuditQueries, QueryError } from './queries.js';
import { openShardDb, shardFile } from './shard-db.js';
import type { ReadAnswer, ReadJob, ReadWorkerData } from './read-pool.js';

/**
 * A read worker of the audit (audit/read-pool.ts): answers queries from
 * read-only connections to the shards' files, one per shard, opened on the
 * first query. WAL lets them read the last commit while the audit's own
 * connection writes the next.
 */
const { dataDir } = workerData as ReadWorkerData;
/** Page cache per read connection: the write connection holds the hot pages already; the OS caches the file. */
const READ_CACHE_KIB = 16_384;
const shards = new Map<number, { db: Database; queries: AuditQueries }>();

function queriesOf(shard: number): AuditQueries {
  let open = shards.get(shard);
  if (!open) {
    const db = openShardDb(shardFile(dataDir, shard), true);
    db.pragma(`cache_size = -${READ_CACHE_KIB}`);
    open = { db, queries: new AuditQueries(db) };
    shards.set(shard, open);
  }
  return open.queries;
}

function run(job: ReadJob): unknown {
  const queries = queriesOf(job.shard);
  const r = job.request;
  switch (r.op) {
    case 'auction':
      return { auction: queries.auction(r.auctionId) };
    case 'bids':
      return queries.bids(r.auctionId, r);
    case 'search':
      return queries.search(r);
    case 'events':
      return queries.recentEvents(r.auctionId, r.limit);
  }
}

parentPort!.on('message', (job: ReadJob) => {
  let answer: ReadAnswer;
  try {
    answer = { id: job.id, reply: run(job) };
  } catch (error) {
    answer =
      error instanceof QueryError
        ? { id: job.id, queryError: error.message }
        : { id: job.id, failure: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  parentPort!.postMessage(answer);
});
