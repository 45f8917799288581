/** What this reads of a fault (a FaultRecord of faults.ts; not imported: system.ts, which faults.ts uses, reads the logs). */
export type TimedFault = { target: string; kind: string; startedAt: number; endedAt: number; group: number };

/** A NATS node became the leader of a stream's Raft group (or of the meta group, `stream: "meta"`). */
export type LeaderChange = { at: number; node: string; stream: string };

/** A stream whose leader a NATS fault took away, and how long the cluster went without one. */
export type LostLeader = {
  group: number;
  node: string;
  stream: string;
  /**
   * From the fault's start to the next "new leader" line of any node, or, for
   * a pause that ended before anyone took over, to its end (the leader went
   * on); null if no leader came back by the end of the logs.
   */
  afterMs: number | null;
  /** Whether an election made the next leader (false: the paused one simply went on, or none came). */
  elected: boolean;
};

// nats-server 2.9 logs local time, to the microsecond: `[pid] 2026/12/02 06:09:16.101266 [INF] ...`.
const LINE = /^\[\d+\] (\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{3})\d* \[INF\] (.*)$/;
const STREAM_LEADER = /^JetStream cluster new stream leader for '[^']* > ([^']+)'$/;
const META_LEADER = /^Self is new JetStream cluster metadata leader$/;

/**
 * The leaderships one node took, read from its log. nats-server logs only
 * the leader it becomes, so the cluster's leader of a stream at any time is
 * the last node that said so (a node that is killed says nothing).
 */
export function leaderChanges(node: string, log: string): LeaderChange[] {
  const changes: LeaderChange[] = [];
  for (const line of log.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, y, mo, d, h, mi, s, ms, text] = m;
    // The server and this process share the machine and so its time zone.
    const at = new Date(+y, +mo - 1, +d, +h, +mi, +s, +ms).getTime();
    const stream = STREAM_LEADER.exec(text)?.[1] ?? (META_LEADER.test(text) ? 'meta' : null);
    if (stream) changes.push({ at, node, stream });
  }
  return changes;
}

/**
 * For each kill or pause of a NATS node: the streams (and meta group) it
 * led when the fault began, and when another node took over each. This is
 * what bounds the outage of a leader's loss: nats-server's followers wait
 * out a randomized election timeout (4-9 s, server/raft.go) without
 * heartbeats before they campaign.
 */
export function lostLeaders(changes: LeaderChange[], faults: TimedFault[], nodes: readonly string[]): LostLeader[] {
  const sorted = [...changes].sort((a, b) => a.at - b.at);
  const lost: LostLeader[] = [];
  for (const f of faults) {
    if (!nodes.includes(f.target) || (f.kind !== 'kill' && f.kind !== 'pause')) continue;
    const leaderAt = new Map<string, string>();
    for (const c of sorted) if (c.at <= f.startedAt) leaderAt.set(c.stream, c.node);
    for (const [stream, node] of leaderAt) {
      if (node !== f.target) continue;
      const next = sorted.find((c) => c.stream === stream && c.at > f.startedAt);
      if (f.kind === 'pause' && (!next || next.at > f.endedAt))
        lost.push({ group: f.group, node, stream, afterMs: f.endedAt - f.startedAt, elected: false });
      else lost.push({ group: f.group, node, stream, afterMs: next ? next.at - f.startedAt : null, elected: !!next });
    }
  }
  return lost;
}

/** `AUCTION_LOG_2 elected 6.5 s, meta resumed 2.4 s` (`never` for one without a leader by the end). */
export function describeLost(lost: LostLeader[]): string {
  return lost
    .map(
      (l) =>
        `${l.stream} ${l.afterMs === null ? 'never' : `${l.elected ? 'elected' : 'resumed'} ${(l.afterMs / 1000).toFixed(1)} s`}`,
    )
    .join(', ');
}
