import { readdirSync, readFileSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AuctionCore, decodeSnapshot, type CoreConfig, type CoreImage } from '../engine/core/index.js';
import { decode } from '../protocol/index.js';
import { writeSnapshotFile } from './snapshot-encoder.js';
import { privateDir } from '../service/private-files.js';
import type { SnapshotMeta, SnapshotPort } from './ports.js';

const FILE = /^snapshot-(\d{16})\.bin$/;

/**
 * Snapshot files of one shard in a data directory. A file is written to a
 * temporary name, fsynced and renamed, so a crash leaves either the old set
 * or the new file whole; a file that fails its checksum is skipped in favour
 * of an older one. The newest `keep` files are kept. The directory and the
 * files are owner-only.
 */
export class SnapshotStore implements SnapshotPort {
  constructor(
    private readonly dir: string,
    private readonly keep = 2,
  ) {
    privateDir(dir); // snapshots hold every bidder's maximum
  }

  /**
   * Saves an image (a copy of the core at `meta.lastSeq`, taken by the
   * caller, which must not use it after): encoding it runs on a worker thread
   * (shard/snapshot-encoder.ts), which writes and fsyncs the file too; the
   * rename is off the event loop. One write at a time per store: the caller
   * awaits it before starting the next.
   */
  async save(image: CoreImage, meta: SnapshotMeta): Promise<SnapshotMeta> {
    const name = `snapshot-${String(meta.lastSeq).padStart(16, '0')}.bin`;
    const temporary = join(this.dir, `${name}.tmp`);
    await writeSnapshotFile(meta, image, temporary);
    await rename(temporary, join(this.dir, name));
    await this.prune();
    return meta;
  }

  /** The newest snapshot that decodes, or null; `onSkip` hears about broken ones. */
  loadNewest(
    config: Omit<CoreConfig, 'shard'>,
    onSkip: (file: string, error: unknown) => void,
  ): { core: AuctionCore; meta: SnapshotMeta; writtenAt: number } | null {
    for (const file of this.files().reverse()) {
      try {
        const path = join(this.dir, file);
        const envelope = decode(readFileSync(path)) as SnapshotMeta & { core: Uint8Array };
        const core = decodeSnapshot(envelope.core, config);
        if (core.lastSeq !== envelope.lastSeq) throw new Error('snapshot metadata disagrees with its state');
        return {
          core,
          meta: { lastSeq: envelope.lastSeq, streamSeq: envelope.streamSeq },
          writtenAt: statSync(path).mtimeMs,
        };
      } catch (error) {
        onSkip(file, error);
      }
    }
    return null;
  }

  files(): string[] {
    return readdirSync(this.dir)
      .filter((f) => FILE.test(f))
      .sort();
  }

  private async prune(): Promise<void> {
    const files = this.files();
    for (const file of files.slice(0, Math.max(0, files.length - this.keep)))
      await rm(join(this.dir, file), { force: true });
    for (const file of readdirSync(this.dir))
      if (file.endsWith('.tmp')) await rm(join(this.dir, file), { force: true });
  }
}
