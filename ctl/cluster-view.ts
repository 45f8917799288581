import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { decode, encode, shardOfStream } from '../protocol/index.js';
import { type ProcessStatus, type ShardCopyStatus } from '../protocol/cluster.js';
import { STATUS_SUBJECT } from '../protocol/names.js';
import type { LeaseValue } from '../protocol/cluster.js';

type EngineReport = Extract<ProcessStatus, { kind: 'engine' }>;
type AuditReport = Extract<ProcessStatus, { kind: 'audit' }>;
type GatewayReport = Extract<ProcessStatus, { kind: 'gateway' }>;

/** Thresholds beyond which `status` calls something a problem. */
export const HEALTH = {
  leaseStaleMs: 2_000,
  replicaBehindMessagesMax: 1_000,
  auditBehindMessagesMax: 10_000,
  snapshotAgeMsMax: 10 * 60_000,
};

export type ShardView = {
  shard: number;
  /** Stream messages (batches) in the shard's log; null when the stream does not exist. */
  streamLastSeq: number | null;
  primary: {
    engineId: string;
    lastSeq: number;
    leaderForMs: number;
    pendingCommands: number;
    auctionsLive: number;
  } | null;
  replicas: { engineId: string; status: string; behindMessages: number | null; msBehind: number }[];
  audit: { id: string; behindMessages: number | null; lagMs: number; eventSeq: number } | null;
  lease: { holder: string; renewedAgoMs: number } | null;
  snapshot: { ageMs: number; lastSeq: number; streamSeq: number } | null;
  problems: string[];
};

export type ClusterView = {
  at: number;
  engines: {
    id: string;
    role: string;
    pid: number;
    uptimeMs: number;
    shards: { shard: number; status: string }[];
    shardCount: number | null;
  }[];
  audits: { id: string; pid: number; uptimeMs: number; shards: number[] }[];
  gateways: { id: string; pid: number; uptimeMs: number; listen: string; connections: number; subscriptions: number }[];
  shards: ShardView[];
  problems: string[];
  healthy: boolean;
};

/** Every process's own report: one reply each to `auction.status`, gathered until they stop coming. */
export async function gatherReports(nc: NatsConnection, timeoutMs: number): Promise<ProcessStatus[]> {
  const replies = await nc.requestMany(STATUS_SUBJECT, encode({}), {
    strategy: 'stall',
    stall: Math.min(300, timeoutMs),
    maxWait: timeoutMs,
  });
  const reports: ProcessStatus[] = [];
  for await (const msg of replies) {
    try {
      const report = decode(msg.data) as ProcessStatus;
      if (report && typeof report === 'object' && typeof report.kind === 'string') reports.push(report);
    } catch {
      // Not a status report: ignore it.
    }
  }
  return reports;
}

/** Last stream sequence of every shard log, by shard. */
export async function shardStreams(jsm: JetStreamManager): Promise<Map<number, number>> {
  const streams = new Map<number, number>();
  for await (const info of jsm.streams.list()) {
    const shard = shardOfStream(info.config.name);
    if (shard !== null) streams.set(shard, info.state.last_seq);
  }
  return streams;
}

/** The lease of each shard as stored: holder and when it was last written. */
export async function shardLeases(
  kv: KV | null,
  shards: number[],
): Promise<Map<number, { holder: string; writtenAt: number }>> {
  const leases = new Map<number, { holder: string; writtenAt: number }>();
  if (!kv) return leases;
  await Promise.all(
    shards.map(async (shard) => {
      const entry = await kv.get(`shard.${shard}`);
      if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return;
      try {
        const value = decode(entry.value) as LeaseValue;
        leases.set(shard, { holder: value.engineId, writtenAt: entry.created.getTime() });
      } catch {
        // An unreadable lease is reported as none.
      }
    }),
  );
  return leases;
}

/** Puts the reports, streams and leases together, shard by shard, and names what is wrong. */
export function clusterView(
  reports: ProcessStatus[],
  streams: Map<number, number>,
  leases: Map<number, { holder: string; writtenAt: number }>,
  now = Date.now(),
): ClusterView {
  const engines = reports
    .filter((r): r is EngineReport => r.kind === 'engine')
    .sort((a, b) => a.id.localeCompare(b.id));
  const audits = reports.filter((r): r is AuditReport => r.kind === 'audit').sort((a, b) => a.id.localeCompare(b.id));
  const gateways = reports
    .filter((r): r is GatewayReport => r.kind === 'gateway')
    .sort((a, b) => a.id.localeCompare(b.id));
  const shardSet = new Set<number>(streams.keys());
  for (const e of engines) for (const s of e.shards) shardSet.add(s.shard);
  for (const a of audits) for (const s of a.shards) shardSet.add(s.shard);
  const problems: string[] = [];
  if (engines.length === 0) problems.push('no engine answered');
  if (gateways.length === 0) problems.push('no gateway answered');
  if (audits.length === 0) problems.push('no audit process answered');
  for (const r of reports)
    if (r.unhandledRejections)
      problems.push(`${r.kind} ${r.id}: ${r.unhandledRejections} unhandled promise rejections (bugs: see its log)`);

  const shards = [...shardSet]
    .sort((a, b) => a - b)
    .map((shard): ShardView => {
      const copies: ShardCopyStatus[] = engines.flatMap((e) => e.shards.filter((s) => s.shard === shard));
      const streamLastSeq = streams.get(shard) ?? null;
      const behind = (seq: number) => (streamLastSeq === null ? null : Math.max(0, streamLastSeq - seq));
      const serving = copies.filter((c) => c.status === 'serving' || c.status === 'stepping-down');
      const primaryCopy = serving[0] ?? null;
      const followers = copies.filter((c) => c !== primaryCopy);
      const auditCopy = audits.map((a) => ({ a, s: a.shards.find((s) => s.shard === shard) })).find((x) => x.s);
      const lease = leases.get(shard);
      const view: ShardView = {
        shard,
        streamLastSeq,
        primary: primaryCopy && {
          engineId: primaryCopy.engineId,
          lastSeq: primaryCopy.lastSeq,
          leaderForMs: now - primaryCopy.leaderSince,
          pendingCommands: primaryCopy.pendingCommands,
          auctionsLive: primaryCopy.auctionsLive,
        },
        replicas: followers.map((c) => ({
          engineId: c.engineId,
          status: c.status,
          behindMessages: behind(c.streamSeq),
          msBehind: c.lag.msBehind,
        })),
        audit: auditCopy
          ? {
              id: auditCopy.a.id,
              behindMessages: behind(auditCopy.s!.streamSeq),
              lagMs: auditCopy.s!.lagMs,
              eventSeq: auditCopy.s!.eventSeq,
            }
          : null,
        lease: lease ? { holder: lease.holder, renewedAgoMs: now - lease.writtenAt } : null,
        snapshot: primaryCopy?.snapshot
          ? {
              ageMs: now - primaryCopy.snapshot.at,
              lastSeq: primaryCopy.snapshot.lastSeq,
              streamSeq: primaryCopy.snapshot.streamSeq,
            }
          : null,
        problems: [],
      };
      const p = view.problems;
      if (!primaryCopy)
        p.push(
          copies.length
            ? `no primary serving (copies: ${copies.map((c) => `${c.engineId} ${c.status}`).join(', ')})`
            : 'no engine runs it',
        );
      if (serving.length > 1)
        p.push(`${serving.length} copies claim to serve it: ${serving.map((c) => c.engineId).join(', ')}`);
      if (copies.length > 0 && primaryCopy && followers.length === 0)
        p.push('no replica follows it: losing its primary would stop it');
      for (const f of followers) {
        if (!['following', 'taking-over'].includes(f.status)) p.push(`${f.engineId} is ${f.status}`);
        const n = behind(f.streamSeq);
        if (n !== null && n > HEALTH.replicaBehindMessagesMax)
          p.push(`replica ${f.engineId} is ${n} stream messages behind`);
      }
      if (primaryCopy && (!lease || lease.holder !== primaryCopy.engineId))
        p.push(`lease ${lease ? `held by ${lease.holder}` : 'free'} but ${primaryCopy.engineId} serves`);
      if (lease && primaryCopy && view.lease!.renewedAgoMs > HEALTH.leaseStaleMs)
        p.push(`lease not renewed for ${view.lease!.renewedAgoMs} ms`);
      if (!view.audit) p.push('no audit process follows it');
      else if (view.audit.behindMessages !== null && view.audit.behindMessages > HEALTH.auditBehindMessagesMax)
        p.push(`audit is ${view.audit.behindMessages} stream messages behind`);
      if (view.snapshot && view.snapshot.ageMs > HEALTH.snapshotAgeMsMax)
        p.push(`newest snapshot is ${Math.round(view.snapshot.ageMs / 60_000)} min old`);
      for (const problem of p) problems.push(`shard ${shard}: ${problem}`);
      return view;
    });

  return {
    at: now,
    engines: engines.map((e) => ({
      id: e.id,
      role: e.role,
      pid: e.pid,
      uptimeMs: now - e.startedAt,
      shards: e.shards.map((s) => ({ shard: s.shard, status: s.status })),
      shardCount: e.shardCount ?? null,
    })),
    audits: audits.map((a) => ({
      id: a.id,
      pid: a.pid,
      uptimeMs: now - a.startedAt,
      shards: a.shards.map((s) => s.shard),
    })),
    gateways: gateways.map((g) => ({
      id: g.id,
      pid: g.pid,
      uptimeMs: now - g.startedAt,
      listen: g.listen,
      connections: g.connections,
      subscriptions: g.subscriptions,
    })),
    shards,
    problems,
    healthy: problems.length === 0,
  };
}
