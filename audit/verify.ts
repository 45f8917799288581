import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ShardLog } from '../shard/nats-log.js';
import { Projection, VERIFIED_TABLES } from './projection.js';
import { openShardDb } from './shard-db.js';
import type { VerifyResult } from '../protocol/operations.js';

/**
 * Proves a shard's SQLite file matches its stream: the stream (up to the
 * position the file records) is projected again into memory by the same
 * code, and every table is compared row by row, including the position row
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
  const db = openShardDb(file, true);
  const fresh = new Database(':memory:');
  try {
    // One read transaction: the position and every table from the same commit, while the audit goes on writing.
    db.exec('BEGIN');
    const integrity = db.pragma('integrity_check', { simple: true });
    const filePosition = db
      .prepare(
        'SELECT stream_seq AS streamSeq, event_count AS events, event_seq AS lastSeq, running_hash AS runningHash FROM position WHERE id = 1',
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
    const projection = new Projection(fresh);
    // One connection, nothing concurrent: a transaction may span the reads.
    fresh.exec('BEGIN');
    for await (const { streamSeq, batch, raw } of log.read(0, filePosition.streamSeq))
      projection.applyBatch(streamSeq, batch, raw);
    projection.flush();
    fresh.exec('COMMIT');
    for (const [table, key] of VERIFIED_TABLES) {
      const difference = compareTable(db, fresh, table, key);
      if (difference) return { ...base, ok: false, difference };
    }
    return { ...base, ok: true };
  } finally {
    if (db.inTransaction) db.exec('COMMIT');
    db.close();
    fresh.close();
  }
}

function compareTable(file: Database.Database, expected: Database.Database, table: string, key: string): string | null {
  const left = file.prepare(`SELECT * FROM ${table} ORDER BY ${key}`).iterate() as IterableIterator<
    Record<string, unknown>
  >;
  const right = expected.prepare(`SELECT * FROM ${table} ORDER BY ${key}`).iterate() as IterableIterator<
    Record<string, unknown>
  >;
  for (;;) {
    const a = left.next();
    const b = right.next();
    if (a.done && b.done) return null;
    if (a.done) return `${table} ${key} ${String((b.value as Record<string, unknown>)[key])}: missing from the file`;
    if (b.done) return `${table} ${key} ${String(a.value[key])}: in the file but not in the stream`;
    if (a.value[key] !== b.value[key]) {
      const [low, where] =
        (a.value[key] as number) < (b.value[key] as number)
          ? [a.value[key], 'in the file but not in the stream']
          : [b.value[key], 'missing from the file'];
      left.return?.();
      right.return?.();
      return `${table} ${key} ${String(low)}: ${where}`;
    }
    for (const column of Object.keys(b.value)) {
      if (!Object.is(a.value[column], b.value[column])) {
        left.return?.();
        right.return?.();
        return `${table} ${key} ${String(a.value[key])}: ${column} is ${JSON.stringify(a.value[column])} in the file, ${JSON.stringify(b.value[column])} from the stream`;
      }
    }
  }
}
