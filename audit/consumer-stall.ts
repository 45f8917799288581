/** How often the audit asks whether its consumer has stopped delivering while the stream went on. */
export const STALL_CHECK_MS = 5_000;

export type StallWatch = {
  /** Messages delivered so far by the current pull (any that arrived counts, written or not). */
  delivered: () => number;
  /** Stream messages past the file's position, or null when the stream cannot say now (no leader). */
  behind: () => Promise<number | null>;
  /** Called once: the pull must be given up and the consumer created again from the file. */
  onStall: (behind: number, quietMs: number) => void;
  everyMs?: number;
};

/**
 * Finds a pull that delivers nothing while the stream holds messages the file
 * has not: nats.js recovers a pull from missed heartbeats and reconnects, but
 * not from a consumer that is gone for good. It retries "consumer not found"
 * forever, and a durable consumer can be lost with a NATS node (chaos seeds
 * 203, 205 and 206 left shards behind for the rest of the run, after forced
 * reconnects). The file knows its position, so the cure is the one used for a
 * gap: drop the pull and create the consumer again right after the file.
 * It takes two whole quiet periods, each ending with the stream ahead of the
 * file: one alone could be a message appended just before the stream was
 * asked, on its way to an idle pull. A stream that cannot answer (an
 * election) is asked again at the next period, never judged.
 */
export function watchForStalledPull(w: StallWatch): () => void {
  const everyMs = w.everyMs ?? STALL_CHECK_MS;
  let seen = w.delivered();
  let quietSince = Date.now();
  let asking = false;
  let stalled = false;
  let suspect = false;
  const timer = setInterval(() => {
    if (asking || stalled) return;
    const now = w.delivered();
    if (now !== seen) {
      seen = now;
      quietSince = Date.now();
      suspect = false;
      return;
    }
    asking = true;
    w.behind()
      .then((behind) => {
        // Something arrived while the stream was asked: the pull is alive.
        if (stalled || w.delivered() !== seen) return;
        if (behind === null) return;
        if (behind <= 0 || !suspect) {
          suspect = behind > 0;
          return;
        }
        stalled = true;
        clearInterval(timer);
        w.onStall(behind, Date.now() - quietSince);
      })
      .catch(() => undefined)
      .finally(() => {
        asking = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
