import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';

/**
 * Data directories and files readable by their owner only. Snapshots and the
 * audit's SQLite files hold every bidder's maximum bid, and the data dir holds
 * credentials: none of it is for other users of the machine. `mkdir`'s and
 * `open`'s modes apply only to what they create, so existing paths (made by an
 * older version, or by hand) are tightened too.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

export function privateDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(path, PRIVATE_DIR_MODE);
  return path;
}

/** Creates the file empty if it is missing; either way it ends up owner-only. */
export function privateFile(path: string): string {
  closeSync(openSync(path, 'a', PRIVATE_FILE_MODE));
  chmodSync(path, PRIVATE_FILE_MODE);
  return path;
}
