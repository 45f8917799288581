import { parentPort, threadId, workerData } from 'node:worker_threads';
import { connect, type Msg, type Subscription } from '@nats-io/transport-node';
import type { Database } from 'better-sqlite3';
import { roleConnectOptions } from '../protocol/cluster.js';
import { auditSubject } from '../protocol/names.js';
import {
  answer,
  auditQueryParsers,
  decodeRequest,
  parseOperation,
  type AuditQueryOperations,
} from '../protocol/operations.js';
import { AuditQueries, QueryError } from './queries.js';
import { answerQueryFailure, isPositionQuery } from './query-answers.js';
import { openShardDb, shardFile } from './shard-db.js';
import {
  AUDIT_READS_QUEUE,
  type ReadAnswer,
  type ReadRequest,
  type ReadWorkerData,
  type ToReadWorker,
} from './read-pool.js';

/**
 * A read worker of the audit (audit/read-pool.ts): answers queries from
 * read-only connections to the shards' files, one per shard, opened on the
 * first query. WAL lets them read the last commit while the audit's own
 * connection writes the next. With a NATS URL it takes the shards' public
 * queries itself, on a connection of its own in a queue group with the
 * process's other read workers: a query then never waits for the thread that
 * writes (its transactions last up to ~150 ms at 1.25M auctions a shard), on
 * the way in or out. `position` is that thread's to answer. It takes the
 * shards it owns (read-pool.ts), and others while their owner is replaced.
 */
const { dataDir, natsUrl, shards: followed } = workerData as ReadWorkerData;
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

function run(job: { shard: number; request: ReadRequest }): unknown {
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

/** A public query from NATS: answered here, errors as ShardAudit answers them; `position` is left to the writing thread. */
function onRequest(shard: number, msg: Msg): void {
  const raw = decodeRequest(msg);
  if (isPositionQuery(raw)) return;
  const request = parseOperation<AuditQueryOperations>(msg, raw, auditQueryParsers, 'query');
  if (!request || request.op === 'position') return;
  try {
    answer(msg, run({ shard, request }));
  } catch (error) {
    answerQueryFailure(msg, error, (err) =>
      parentPort!.postMessage({ log: `query ${request.op} failed: ${err instanceof Error ? err.stack : String(err)}` }),
    );
  }
}

const nc = natsUrl
  ? await connect({
      servers: natsUrl.split(','),
      name: `audit reads ${threadId}`,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      ...roleConnectOptions('audit'),
    })
  : null;
const subscriptions = new Map<number, Subscription>();

/** Subscribes to exactly `wanted` shards' query subjects (those already subscribed stay). */
function serve(wanted: number[]): void {
  if (!nc) return;
  for (const [shard, subscription] of subscriptions)
    if (!wanted.includes(shard)) {
      subscription.unsubscribe();
      subscriptions.delete(shard);
    }
  for (const shard of wanted)
    if (!subscriptions.has(shard))
      subscriptions.set(
        shard,
        nc.subscribe(auditSubject(shard), { queue: AUDIT_READS_QUEUE, callback: (_e, msg) => onRequest(shard, msg) }),
      );
}

serve(followed);
await nc?.flush();
parentPort!.postMessage({ ready: true } satisfies ReadAnswer);

parentPort!.on('message', (message: ToReadWorker) => {
  if ('serve' in message) return serve(message.serve);
  const job = message;
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
