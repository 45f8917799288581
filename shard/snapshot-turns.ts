/**
 * Whose turn it is to begin a periodic snapshot, among the shards of one
 * process. Taking a snapshot's image copies the shard's whole state on the
 * event loop (~30 ms idle for the 40 MB of 1.25M auctions, several times that
 * on a busy machine), and every shard of a process came due in the same
 * second: four images back to back held the loop long enough for the lease
 * renewals of all four shards to miss their 1 s TTL, and make bench-scale saw
 * both primaries lose every shard that way at 10M auctions (and rebuild each
 * of them, holding the loop again). One begins at a time, `spacingMs` apart,
 * and the turn goes to the waiting shard whose last snapshot is oldest (first
 * come would let two shards due often take every turn). A shard refused now
 * asks again at its next check; one that stops asking (it stopped serving)
 * is forgotten after `staleMs`. A snapshot an operator asks for does not
 * wait for a turn.
 */
export class SnapshotTurns {
  private lastBeganAt = -Infinity;
  private readonly waiting = new Map<number, { lastSnapshotAt: number; askedAt: number }>();

  constructor(
    private readonly spacingMs = 1_000,
    private readonly staleMs = 3_000,
  ) {}

  /**
   * True, and the turn is `shard`'s, when no snapshot began within
   * `spacingMs` of `now` (the caller's clock) and no shard waiting for one
   * has an older last snapshot.
   */
  take(shard: number, now: number, lastSnapshotAt: number): boolean {
    this.waiting.set(shard, { lastSnapshotAt, askedAt: now });
    let oldest = shard;
    for (const [other, w] of this.waiting) {
      if (now - w.askedAt > this.staleMs) this.waiting.delete(other);
      else if (w.lastSnapshotAt < this.waiting.get(oldest)!.lastSnapshotAt) oldest = other;
    }
    if (oldest !== shard || now - this.lastBeganAt < this.spacingMs) return false;
    this.waiting.delete(shard);
    this.lastBeganAt = now;
    return true;
  }
}
