import {
  decodeSnapshot,
  encodeImage,
  type AuctionCore,
  type CoreConfig,
  type CoreImage,
} from '../../engine/core/index.js';
import type { SnapshotMeta, SnapshotPort } from '../../shard/ports.js';
import type { Scheduler, SimNode } from './scheduler.js';

/** Files kept, as shard/snapshot-store.ts keeps them. */
export const SNAPSHOTS_KEPT = 2;

export type MemorySnapshotsOptions = {
  /** From the call to the file being renamed into place (write and fsync); drawn per save. */
  writeLatencyMs?: () => number;
};

/** One durable snapshot file. */
export type SnapshotFile = {
  readonly name: string;
  readonly meta: SnapshotMeta;
  readonly bytes: Uint8Array;
  readonly writtenAt: number;
};

/** The file name shard/snapshot-store.ts gives a snapshot: the newest is the one with the highest event sequence. */
const fileName = (meta: SnapshotMeta): string => `snapshot-${String(meta.lastSeq).padStart(16, '0')}.bin`;

/**
 * A copy's snapshot files in its data directory. The directory outlives the
 * process: a restarted incarnation gets the same instance, attached to its
 * new node. A save takes the image at once and becomes durable a write
 * latency later, as an event of the process that wrote it, so a kill before
 * then loses the file and leaves the save unsettled forever.
 */
export class MemorySnapshots implements SnapshotPort {
  private node: SimNode | null = null;
  /** Durable files, oldest first (by event sequence, as file names sort). */
  private stored: SnapshotFile[] = [];
  private readonly writeLatencyMs: () => number;

  constructor(
    private readonly scheduler: Scheduler,
    options: MemorySnapshotsOptions = {},
  ) {
    this.writeLatencyMs = options.writeLatencyMs ?? (() => 5);
  }

  /** The process now using the directory (a new incarnation after a restart). */
  attach(node: SimNode): void {
    this.node = node;
  }

  /** Durable files, oldest first (checker access). */
  files(): readonly SnapshotFile[] {
    return this.stored;
  }

  save(image: CoreImage, meta: SnapshotMeta): Promise<SnapshotMeta> {
    const node = this.node;
    if (!node) throw new Error('a snapshot directory is saved to before any process is attached');
    const bytes = encodeImage(image);
    return new Promise((resolve) => {
      this.scheduler.schedule(node, Math.max(0, this.writeLatencyMs()), () => {
        this.keep({ name: fileName(meta), meta, bytes, writtenAt: this.scheduler.now });
        resolve(meta);
      });
    });
  }

  /** The newest snapshot that decodes, or null; `onSkip` hears about broken ones. */
  loadNewest(
    config: Omit<CoreConfig, 'shard'>,
    onSkip: (file: string, error: unknown) => void,
  ): { core: AuctionCore; meta: SnapshotMeta; writtenAt: number } | null {
    for (let i = this.stored.length - 1; i >= 0; i--) {
      const file = this.stored[i];
      try {
        const core = decodeSnapshot(file.bytes, config);
        if (core.lastSeq !== file.meta.lastSeq) throw new Error('snapshot metadata disagrees with its state');
        return { core, meta: { ...file.meta }, writtenAt: file.writtenAt };
      } catch (error) {
        onSkip(file.name, error);
      }
    }
    return null;
  }

  /** The rename: a file of the same name is replaced; then only the newest SNAPSHOTS_KEPT stay. */
  private keep(file: SnapshotFile): void {
    const others = this.stored.filter((f) => f.name !== file.name);
    this.stored = [...others, file].sort((a, b) => a.meta.lastSeq - b.meta.lastSeq).slice(-SNAPSHOTS_KEPT);
  }
}
