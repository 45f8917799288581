import type { FollowedMessage } from './stream-follower-options.js';

/**
 * The re-published copies a StreamFollower received ahead of a gap, kept
 * until the gap is read back, by sequence. Bounded by count and bytes: a
 * copy that does not fit is refused (the follower reads it back with the gap).
 */
export class GapBuffer {
  private readonly copies = new Map<number, FollowedMessage>();
  private bytes = 0;

  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number,
  ) {}

  get size(): number {
    return this.copies.size;
  }

  get(seq: number): FollowedMessage | undefined {
    return this.copies.get(seq);
  }

  /** Keeps a copy (a second copy of a sequence changes nothing); false when there is no room for it. */
  add(message: FollowedMessage): boolean {
    if (this.copies.size >= this.countMax || this.bytes + message.data.length > this.bytesMax) return false;
    if (!this.copies.has(message.seq)) {
      this.copies.set(message.seq, message);
      this.bytes += message.data.length;
    }
    return true;
  }

  /** Removes the copy of `seq` and returns it (undefined: none). */
  take(seq: number): FollowedMessage | undefined {
    const message = this.copies.get(seq);
    if (!message) return undefined;
    this.copies.delete(seq);
    this.bytes -= message.data.length;
    return message;
  }

  /** Drops every copy at or before `seq` (delivered already). */
  dropUpTo(seq: number): void {
    for (const s of this.copies.keys()) if (s <= seq) this.take(s);
  }

  /** The sequences held below `seq`, oldest first. */
  below(seq: number): number[] {
    return [...this.copies.keys()].filter((s) => s < seq).sort((a, b) => a - b);
  }

  /** The oldest sequence held (undefined: none). */
  lowest(): number | undefined {
    return this.copies.size > 0 ? Math.min(...this.copies.keys()) : undefined;
  }

  clear(): void {
    this.copies.clear();
    this.bytes = 0;
  }
}
