import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ShardLog } from '../shard/nats-log.js';
import { Projection, VERIFIED_TABLES } from './projection.js';
import { firstDifference } from './table-diff.js';
import type { VerifyResult } from '../protocol/operations.js';

/**
 * Proves a shard's SQLite file matches its stream: the stream (up to the
 * position the file records) is projected again into memory by the same
 * code, and every table is compared row by row (audit/table-diff.ts), including the position row
 * with its event count, last sequence and running hash. The file may lag the
 * stream (the audit is asynchronous); it may not differ from it.
 */
export async function verifyShard(
  nc: NatsConnection,
  js: JetStreamClient,
  jsm: JetStreamManager,
  shard: number,
  file: string,
): Promise<VerifyResult> {
  const log = new ShardLog(nc, js, jsm, shard);
  const streamLastSeq = await log.lastStreamSeq();
  if (!existsSync(file)) {
    return {
      shard,
      ok: streamLastSeq === 0,
      fileStreamSeq: 0,
      streamLastSeq,
      events: 0,
      lastSeq: 0,
      runningHash: '',
      difference: streamLastSeq === 0 ? undefined : `no file ${file}`,
    };
  }
  // The stream projected again, in memory, on the connection that reads the file: the tables are then
  // compared by SQLite joining the two (audit/table-diff.ts). The file is attached, not opened read-only
  // (this build of SQLite takes no URI), so the connection is made query-only before it reads the file.
  const db = new Database(':memory:');
  try {
    db.prepare('ATTACH DATABASE ? AS file').run(file);
    // One read transaction: the position and every table from the same commit, while the audit goes on writing.
    db.exec('BEGIN');
    const integrity = db.pragma('file.integrity_check', { simple: true });
    const filePosition = db
      .prepare(
        'SELECT stream_seq AS streamSeq, event_count AS events, event_seq AS lastSeq, running_hash AS runningHash FROM file.position WHERE id = 1',
      )
      .get() as { streamSeq: number; events: number; lastSeq: number; runningHash: string };
    const base = {
      shard,
      fileStreamSeq: filePosition.streamSeq,
      streamLastSeq,
      events: filePosition.events,
      lastSeq: filePosition.lastSeq,
      runningHash: filePosition.runningHash,
    };
    if (integrity !== 'ok') return { ...base, ok: false, difference: `integrity_check: ${String(integrity)}` };
    if (filePosition.streamSeq > streamLastSeq)
      return {
        ...base,
        ok: false,
        difference: `the file is at stream message ${filePosition.streamSeq}, the stream ends at ${streamLastSeq}`,
      };
    // Tables only: the sorts' and full-text indexes are not compared, and building them was most of the time.
    const projection = new Projection(db, false);
    for await (const { streamSeq, batch, raw } of log.read(0, filePosition.streamSeq))
      projection.applyBatch(streamSeq, batch, raw);
    projection.flush();
    db.pragma('query_only = ON');
    for (const [table, key] of VERIFIED_TABLES) {
      const difference = firstDifference(db, table, key, 'file', 'main');
      if (difference) return { ...base, ok: false, difference };
    }
    return { ...base, ok: true };
  } finally {
    if (db.inTransaction) db.exec('COMMIT');
    db.close();
  }
}
