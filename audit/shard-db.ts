import { join } from 'node:path';
import Database, { type Database as DB } from 'better-sqlite3';
import { privateFile } from '../service/private-files.js';

/** Where a shard's SQLite file is (one file per shard). */
export const shardFile = (dataDir: string, shard: number) => join(dataDir, `shard-${shard}.sqlite`);

/** Opens a shard's SQLite file in WAL mode with the read model's schema. */
export function openShardDb(file: string, readonly = false): DB {
  // Owner-only: the file holds every bidder's maximum. SQLite gives its -wal and -shm files the same mode.
  if (!readonly) privateFile(file);
  const db = new Database(file, { readonly, fileMustExist: readonly });
  if (!readonly) {
    db.pragma('journal_mode = WAL');
    // WAL + NORMAL survives a process crash (like the 2.9 stream it mirrors); the position row makes replays safe.
    db.pragma('synchronous = NORMAL');
    db.pragma('cache_size = -65536'); // 64 MiB of pages: the hot auctions and index pages stay in memory
    db.pragma('temp_store = MEMORY');
  }
  return db;
}
