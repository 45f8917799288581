#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  auctionNumberOf,
  decode,
  encode,
  isId,
  isUserId,
  shardOfAuction,
  SHARDS_MAX,
  streamName,
  subjects,
  type CommandReply,
  type CommandResult,
  isRetrySafe,
} from '../protocol/index.js';
import { parseShards } from '../protocol/config-error.js';
import { natsCredentials } from '../protocol/cluster.js';
import {
  adminSubjects,
  auditSubject,
  inboxPrefix,
  LEASE_BUCKET,
  type Role,
  ROLES,
  USER_FLAGS_BUCKET,
} from '../protocol/names.js';
import { bucketOptions, NotProvisionedError } from '../protocol/provisioning.js';
import { natsFailureOf } from '../protocol/nats-errors.js';
import { provisionCluster } from './provision.js';
import { ownerOf, placement } from '../protocol/placement.js';
import type {
  AuditAdminOperations,
  AuditQueryOperations,
  ControlOperations,
  EngineAdminOperations,
  EngineAdminRequest,
  GatewayAdminOperations,
  Operations,
  ReplyOf,
  RequestFor,
  VerifyResult,
} from '../protocol/operations.js';
import { clusterView, gatherReports, shardLeases, shardStreams, type ClusterView } from './cluster-view.js';

/** Exit codes scripts can rely on (docs/operations.md). */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, forbidden: 4 } as const;

const USAGE = `usage: auctionctl [options] <command>

commands:
  status                          every shard, engine, audit and gateway; exit 1 when something is wrong
  shard-of <auctionId>            the shard that owns an auction and where it is served
  placement [--join ID] [--leave ID]
                                  where shards live, and where they would move if an engine joined or left
  auction show <id> [--events N]  live state (engine), details and recent events (audit)
  auction close <id>              close now: the winner is decided as at the end time
  auction cancel <id> --reason T  end with no winner
  snapshot <shard>                the shard's primary writes a snapshot now
  step-down <shard> [--to ID]     hand the shard over to its most caught-up replica (or ID)
  audit verify [--shards LIST]    prove each audit SQLite file matches its stream
  user disable <id> [--reason T]  refuse the user's tokens and sign-ins on every gateway, end their connections
  user enable <id>
  token mint --user <id> [--ttl-ms N]
                                  a token for a user (tests, load runs), minted by a gateway
  cluster init --shard-count N [--stream-replicas R] [--auctions-max N] [--idempotency-entries N]
                                  create every stream and bucket of a cluster of N shards (idempotent: what
                                  exists is kept); services may not create them under their own NATS users

options:
  --nats URL          NATS servers, comma-separated (env NATS_URL; else the credentials file's "url";
                      else nats://127.0.0.1:4222)
  --nats-user U --nats-password P
                      NATS credentials (env NATS_USER, NATS_PASSWORD)
  --credentials FILE  JSON {"user", "password", "url"?} (env NATS_CREDENTIALS; default .data/auth/admin.json,
                      written by make up, when present)
  --timeout-ms N      how long to wait for answers (default 3000)
  --json              print one JSON document instead of tables

exit codes: 0 ok; 1 refused, failed or unhealthy; 2 usage; 3 cluster unreachable or not answering; 4 not allowed (no admin rights)`;

/** A failure with its exit code and a stable error code for --json. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code = 'failed',
  ) {
    super(message);
  }
}

const DEFAULT_CREDENTIALS = '.data/auth/admin.json';

type Options = {
  json: boolean;
  timeoutMs: number;
  values: Record<string, string | boolean | undefined>;
};

/** NATS failures in words an operator can act on, with the right exit code (sorted by nats.js's error classes). */
function natsFailure(error: unknown, what: string): CliError {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof NotProvisionedError) return new CliError(`${what}: ${message}`, EXIT.forbidden, 'forbidden');
  switch (natsFailureOf(error)) {
    case 'forbidden':
      return new CliError(`not allowed: ${what} needs admin rights (${message})`, EXIT.forbidden, 'forbidden');
    case 'unauthenticated':
      return new CliError(`NATS refused these credentials: ${message}`, EXIT.forbidden, 'forbidden');
    case 'no-responders':
      return new CliError(
        `nobody answered ${what}: is that part of the cluster running?`,
        EXIT.unreachable,
        'unavailable',
      );
    case 'timeout':
      return new CliError(`no answer to ${what} in time`, EXIT.unreachable, 'unavailable');
    case 'other':
      return new CliError(`${what} failed: ${message}`, EXIT.failed);
  }
}

class Cluster {
  private jsmCache: JetStreamManager | null = null;

  private constructor(
    readonly nc: NatsConnection,
    readonly timeoutMs: number,
  ) {}

  static async connect(
    servers: string,
    credentials: { user?: string; pass?: string },
    timeoutMs: number,
  ): Promise<Cluster> {
    // Replies come back under the inbox prefix of the role whose user this is (the admin's without a user);
    // any other user keeps nats.js's default, which its own permissions are likely to allow.
    const role = credentials.user === undefined ? 'admin' : ROLES.find((r: Role) => r === credentials.user);
    try {
      const nc = await connect({
        servers: servers.split(','),
        name: 'auctionctl',
        timeout: timeoutMs,
        maxReconnectAttempts: 0,
        ...(role ? { inboxPrefix: inboxPrefix(role) } : {}),
        ...credentials,
      });
      return new Cluster(nc, timeoutMs);
    } catch (error) {
      const failure = natsFailure(error, 'connect');
      if (failure.exitCode === EXIT.forbidden) throw failure;
      throw new CliError(
        `cannot reach NATS at ${servers}: ${(error as Error).message}`,
        EXIT.unreachable,
        'unreachable',
      );
    }
  }

  async jsm(): Promise<JetStreamManager> {
    this.jsmCache ??= await jetstreamManager(this.nc, { timeout: this.timeoutMs }).catch((error: unknown) => {
      throw natsFailure(error, 'JetStream');
    });
    return this.jsmCache;
  }

  /** One operation of `Ops` (protocol/operations.ts), typed by its table; an `{error}` answer becomes a CliError. */
  ask<Ops extends Operations, Op extends keyof Ops>(
    subject: string,
    request: RequestFor<Ops, Op>,
    what: string,
    timeoutMs = this.timeoutMs,
  ): Promise<ReplyOf<Ops, Op>> {
    return this.request<ReplyOf<Ops, Op>>(subject, request, what, timeoutMs);
  }

  /** A msgpack request; an answer `{error: {code, message}}` becomes a CliError. */
  async request<T>(subject: string, body: unknown, what: string, timeoutMs = this.timeoutMs): Promise<T> {
    let reply;
    try {
      reply = await this.nc.request(subject, encode(body), { timeout: timeoutMs });
    } catch (error) {
      throw natsFailure(error, what);
    }
    const answer = decode(reply.data) as { error?: { code: string; message: string } };
    if (answer && typeof answer === 'object' && answer.error) {
      throw new CliError(
        `${what}: ${answer.error.message} (${answer.error.code})`,
        isRetrySafe(answer.error.code) ? EXIT.unreachable : EXIT.failed,
        answer.error.code,
      );
    }
    return answer as T;
  }

  async view(): Promise<ClusterView> {
    const jsm = await this.jsm();
    const [reports, streams] = await Promise.all([gatherReports(this.nc, this.timeoutMs), shardStreams(jsm)]);
    const kv = await new Kvm(jetstream(this.nc)).open(LEASE_BUCKET).catch(() => null);
    const shards = new Set<number>(streams.keys());
    for (const r of reports) if (r.kind === 'engine') for (const s of r.shards) shards.add(s.shard);
    return clusterView(reports, streams, await shardLeases(kv, [...shards]));
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

// --- output ------------------------------------------------------------------------

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const red = (text: string) => (color ? `\u001b[31m${text}\u001b[0m` : text);
const yellow = (text: string) => (color ? `\u001b[33m${text}\u001b[0m` : text);
const bold = (text: string) => (color ? `\u001b[1m${text}\u001b[0m` : text);

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [bold(line(headers)), ...rows.map(line)].join('\n');
}

function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${(ms / 1_000).toFixed(1)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${(ms / 3_600_000).toFixed(1)}h`;
}

const money = (cents: number) =>
  Number.isSafeInteger(cents) ? `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}` : String(cents);
const time = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : '-');

function printStatus(v: ClusterView): string {
  const out: string[] = [];
  out.push(
    `${v.engines.length} engine(s), ${v.audits.length} audit(s), ${v.gateways.length} gateway(s), ${v.shards.length} shard(s): ${v.healthy ? 'healthy' : red(`${v.problems.length} problem(s)`)}`,
  );
  out.push('');
  out.push(
    table(
      ['SHARD', 'LOG', 'EVENTS', 'PRIMARY', 'LEASE', 'REPLICAS (behind)', 'AUDIT (behind)', 'SNAPSHOT'],
      v.shards.map((s) => {
        const row = [
          String(s.shard),
          s.streamLastSeq === null ? '-' : String(s.streamLastSeq),
          s.primary ? String(s.primary.lastSeq) : '-',
          s.primary ? `${s.primary.engineId} (${duration(s.primary.leaderForMs)})` : red('none'),
          s.lease ? `${s.lease.holder} ${duration(s.lease.renewedAgoMs)} ago` : 'free',
          s.replicas.length
            ? s.replicas
                .map(
                  (r) => `${r.engineId}${r.status === 'following' ? '' : ` ${r.status}`} (${r.behindMessages ?? '?'})`,
                )
                .join(', ')
            : red('none'),
          s.audit ? `${s.audit.behindMessages ?? '?'} msgs, ${duration(s.audit.lagMs)}` : red('none'),
          s.snapshot ? `${duration(s.snapshot.ageMs)} ago` : 'none yet',
        ];
        return s.problems.length ? row.map((c, i) => (i === 0 ? red(`!${c}`) : c)) : row;
      }),
    ),
  );
  out.push('');
  out.push(
    table(
      ['ENGINE', 'ROLE', 'PID', 'UP', 'SHARDS'],
      v.engines.map((e) => [
        e.id,
        e.role,
        String(e.pid),
        duration(e.uptimeMs),
        e.shards.map((s) => `${s.shard}:${s.status}`).join(' '),
      ]),
    ),
  );
  if (v.audits.length)
    out.push(
      '',
      table(
        ['AUDIT', 'PID', 'UP', 'SHARDS'],
        v.audits.map((a) => [a.id, String(a.pid), duration(a.uptimeMs), a.shards.join(',')]),
      ),
    );
  if (v.gateways.length)
    out.push(
      '',
      table(
        ['GATEWAY', 'LISTEN', 'PID', 'UP', 'CONNECTIONS', 'SUBSCRIPTIONS'],
        v.gateways.map((g) => [
          g.id,
          g.listen,
          String(g.pid),
          duration(g.uptimeMs),
          String(g.connections),
          String(g.subscriptions),
        ]),
      ),
    );
  if (v.problems.length) out.push('', red('problems:'), ...v.problems.map((p) => red(`  ! ${p}`)));
  return out.join('\n');
}

// --- commands ----------------------------------------------------------------------

function idArgument(text: string | undefined, what: string, check: (n: number) => boolean = isId): number {
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !check(n))
    throw new CliError(`${what}: expected a positive integer id, got ${text ?? 'nothing'}`, EXIT.usage, 'usage');
  return n;
}

function shardArgument(text: string | undefined): number {
  if (text === undefined || !/^\d+$/.test(text) || Number(text) >= 1024)
    throw new CliError(`expected a shard number 0..1023, got ${text ?? 'nothing'}`, EXIT.usage, 'usage');
  return Number(text);
}

type Output = { data: unknown; text: string; exitCode?: number };

async function status(c: Cluster): Promise<Output> {
  const v = await c.view();
  return { data: v, text: printStatus(v), exitCode: v.healthy ? EXIT.ok : EXIT.failed };
}

async function shardOf(c: Cluster, args: string[]): Promise<Output> {
  const auctionId = idArgument(args[0], 'shard-of');
  const shard = shardOfAuction(auctionId);
  const v = await c.view();
  const s = v.shards.find((x) => x.shard === shard);
  const data = {
    auctionId,
    shard,
    auctionNumber: auctionNumberOf(auctionId),
    stream: streamName(shard),
    commands: subjects.commands(shard),
    primary: s?.primary?.engineId ?? null,
    replicas: s?.replicas.map((r) => r.engineId) ?? [],
    known: Boolean(s),
  };
  const text =
    `auction ${auctionId} -> shard ${shard} (auction #${data.auctionNumber} of the shard)\n` +
    `  log ${data.stream}, commands ${data.commands}\n` +
    `  primary ${data.primary ?? red('none')}; replicas ${data.replicas.join(', ') || 'none'}${s ? '' : red('\n  ! no engine, audit or stream knows this shard')}`;
  return { data, text };
}

async function placementCommand(c: Cluster, values: Options['values']): Promise<Output> {
  const v = await c.view();
  const placed = v.engines.filter((e) => e.shardCount !== null);
  const shardCount = placed.length ? Math.max(...placed.map((e) => e.shardCount!)) : null;
  const now = v.shards.map((s) => ({
    shard: s.shard,
    primary: s.primary?.engineId ?? null,
    replicas: s.replicas.map((r) => r.engineId),
  }));
  const lines = [
    table(
      ['SHARD', 'PRIMARY', 'REPLICAS'],
      now.map((s) => [String(s.shard), s.primary ?? red('none'), s.replicas.join(', ') || '-']),
    ),
  ];
  const data: Record<string, unknown> = { shards: now, mode: shardCount === null ? 'static' : 'placement', shardCount };
  if (shardCount === null) {
    lines.push(
      '',
      'static placement: every engine serves the shards given by its --shards; nothing moves when an engine joins or leaves.',
      'A shard fails over to a replica of it (lease expiry) or moves by `auctionctl step-down`.',
    );
  } else {
    const live = placed.map((e) => e.id).sort();
    const moves = (engines: string[]) => {
      const moved: { shard: number; from: string | null; to: string | null }[] = [];
      for (let shard = 0; shard < shardCount; shard++) {
        const from = ownerOf(shard, live);
        const to = ownerOf(shard, engines);
        if (from !== to) moved.push({ shard, from, to });
      }
      return moved;
    };
    const describe = (m: { shard: number; from: string | null; to: string | null }[]) =>
      m.length ? m.map((x) => `${x.shard}: ${x.from} -> ${x.to}`).join(', ') : 'nothing moves';
    const joining = typeof values.join === 'string' ? values.join : 'new-engine';
    const ifJoined = moves([...live, joining]);
    const ifLeft = Object.fromEntries(
      (typeof values.leave === 'string' ? [values.leave] : live).map((id) => [id, moves(live.filter((e) => e !== id))]),
    );
    Object.assign(data, {
      live,
      byHashing: Object.fromEntries(placement(shardCount, live)),
      ifJoined: { engine: joining, moves: ifJoined },
      ifLeft,
    });
    lines.push('', `placement by rendezvous hashing over ${live.length} live engine(s), ${shardCount} shards:`);
    for (const [engine, shards] of placement(shardCount, live)) lines.push(`  ${engine}: ${shards.join(',') || '-'}`);
    lines.push('', `if ${joining} joined: ${describe(ifJoined)}`);
    for (const [id, m] of Object.entries(ifLeft)) lines.push(`if ${id} left: ${describe(m)}`);
  }
  return { data, text: lines.join('\n') };
}

async function auctionCommand(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  const [sub, idText] = args;
  if (sub !== 'show' && sub !== 'close' && sub !== 'cancel')
    throw new CliError('auction show|close|cancel <id>', EXIT.usage, 'usage');
  const auctionId = idArgument(idText, `auction ${sub}`);
  const shard = shardOfAuction(auctionId);
  if (sub === 'show') {
    const limit = values.events === undefined ? 10 : Number(values.events);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw new CliError('--events takes 1..100', EXIT.usage, 'usage');
    const [live, details, recent] = await Promise.all([
      c
        .ask<ControlOperations, 'state'>(
          subjects.control(shard),
          { op: 'state', auctionId },
          `the primary of shard ${shard}`,
        )
        .catch((e: CliError) => ({ auction: null, error: e.message })),
      c
        .ask<AuditQueryOperations, 'auction'>(
          auditSubject(shard),
          { op: 'auction', auctionId },
          `the audit of shard ${shard}`,
        )
        .catch((e: CliError) => ({ auction: null, error: e.message })),
      c
        .ask<AuditAdminOperations, 'events'>(
          adminSubjects.audit(shard),
          { op: 'events', auctionId, limit },
          `the audit of shard ${shard}`,
        )
        .catch((e: CliError) => {
          if (e.exitCode === EXIT.forbidden) throw e;
          return { events: [], error: e.message };
        }),
    ]);
    if (!live.auction && !details.auction) {
      const why = ['error' in live && live.error, 'error' in details && details.error].filter(Boolean).join('; ');
      throw new CliError(
        `auction ${auctionId}: not found${why ? ` (${why})` : ''}`,
        why ? EXIT.unreachable : EXIT.failed,
        why ? 'unavailable' : 'auction_not_found',
      );
    }
    // The engine's state when it answered, else the read model's Auction: the fields shown are in both.
    const state = live.auction ?? details.auction!;
    const title = details.auction?.title;
    const lines = [
      `auction ${auctionId} (shard ${shard})${title ? `: ${title}` : ''}`,
      `  status ${state.status}  price ${money(state.price)}  leader ${state.leaderId || '-'}  bids ${state.bidCount}  version ${state.version}`,
      `  seller ${state.sellerId}  reserve ${state.hasReserve ? (state.reserveMet ? 'met' : 'not met') : 'none'}  starts ${time(state.startsAt)}  ends ${time(state.endsAt)}${state.softCloseSeconds ? `  soft close ${state.softCloseSeconds}s` : ''}${state.winnerId ? `  winner ${state.winnerId}` : ''}`,
      live.auction ? '' : red('  ! the engine did not answer: state from the audit (may lag)'),
      `recent events (audit, newest first):`,
      recent.events.length
        ? table(
            ['SEQ', 'TYPE', 'STATUS', 'PRICE', 'WHO', 'MAX', 'AT'],
            recent.events.map((e) => [
              String(e.seq),
              String(e.type),
              `${String(e.status)}${e.reason ? ` (${e.reason})` : ''}${e.detail ? `: ${e.detail}` : ''}${e.leading ? ' leading' : ''}`,
              money(Number(e.price)),
              e.bidderId ? `bidder ${e.bidderId}` : e.winnerId ? `winner ${e.winnerId}` : '-',
              e.maxBid !== undefined ? money(Number(e.maxBid)) : '-',
              time(Number(e.at)),
            ]),
          )
        : `  none${'error' in recent ? ` (${String(recent.error)})` : ''}`,
    ].filter((l) => l !== '');
    return {
      data: { auctionId, shard, live: live.auction, details: details.auction, events: recent.events },
      text: lines.join('\n'),
    };
  }
  const reason = typeof values.reason === 'string' ? values.reason : undefined;
  if (sub === 'cancel' && !reason)
    throw new CliError('auction cancel needs --reason "..." (kept in the audit)', EXIT.usage, 'usage');
  const command = { type: sub, auctionId, ...(reason ? { reason } : {}) };
  const { results } = await c.request<CommandReply>(
    adminSubjects.engine(shard),
    { commands: [command] } satisfies EngineAdminRequest,
    `the primary of shard ${shard}`,
  );
  const result = results?.[0] as
    | (CommandResult & {
        seq?: number;
        winnerId?: number;
        price?: number;
        reason?: string;
        code?: string;
        message?: string;
      })
    | undefined;
  if (!result || result.status !== 'accepted') {
    const why =
      result?.status === 'error' ? `${result.code}: ${result.message}` : `rejected: ${result?.reason ?? 'no answer'}`;
    throw new CliError(
      `auction ${sub} ${auctionId}: ${why}`,
      result?.status === 'error' && isRetrySafe(result.code) ? EXIT.unreachable : EXIT.failed,
      result?.status === 'error' ? result.code : (result?.reason ?? 'failed'),
    );
  }
  // Acknowledged means durable in the log; wait (bounded) until the audit has it too.
  const seq = result.seq ?? 0;
  const deadline = Date.now() + c.timeoutMs;
  let audited = false;
  while (!audited && Date.now() < deadline) {
    const position = await c
      .ask<AuditQueryOperations, 'position'>(auditSubject(shard), { op: 'position' }, `the audit of shard ${shard}`)
      .catch(() => ({ eventSeq: 0 }));
    audited = position.eventSeq >= seq;
    if (!audited) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const outcome =
    sub === 'close'
      ? result.winnerId
        ? `winner ${result.winnerId} at ${money(result.price ?? 0)}`
        : 'no winner'
      : `cancelled${reason ? `: ${reason}` : ''}`;
  return {
    data: { auctionId, shard, result, audited },
    text: `auction ${auctionId} ${sub === 'close' ? 'closed' : 'cancelled'} at seq ${seq}: ${outcome}; ${audited ? 'recorded by the audit' : red('the audit has not recorded it yet')}`,
  };
}

async function snapshot(c: Cluster, args: string[]): Promise<Output> {
  const shard = shardArgument(args[0]);
  const answer = await c.ask<EngineAdminOperations, 'snapshot'>(
    adminSubjects.engine(shard),
    { op: 'snapshot' },
    `the primary of shard ${shard}`,
    Math.max(c.timeoutMs, 30_000),
  );
  return {
    data: { shard, ...answer },
    text: `shard ${shard}: ${answer.engineId} wrote a snapshot at seq ${answer.snapshot.lastSeq} (stream message ${answer.snapshot.streamSeq}) in ${answer.ms} ms; the shard decided nothing for ${answer.stallMs} ms of it`,
  };
}

async function stepDown(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  const shard = shardArgument(args[0]);
  const v = await c.view();
  const s = v.shards.find((x) => x.shard === shard);
  if (!s?.primary) throw new CliError(`shard ${shard} has no primary serving`, EXIT.failed, 'no_primary');
  const candidates = s.replicas
    .filter((r) => r.status === 'following')
    .sort((a, b) => (a.behindMessages ?? Infinity) - (b.behindMessages ?? Infinity) || a.msBehind - b.msBehind);
  const to = typeof values.to === 'string' ? values.to : candidates[0]?.engineId;
  if (!to) throw new CliError(`shard ${shard} has no replica following it to hand over to`, EXIT.failed, 'no_replica');
  if (!candidates.some((r) => r.engineId === to))
    throw new CliError(
      `${to} is not a replica following shard ${shard} (replicas: ${candidates.map((r) => r.engineId).join(', ') || 'none'})`,
      EXIT.failed,
      'no_replica',
    );
  const started = Date.now();
  const answer = await c.ask<EngineAdminOperations, 'step-down'>(
    adminSubjects.engine(shard),
    { op: 'step-down', to },
    `the primary of shard ${shard}`,
    Math.max(c.timeoutMs, 15_000),
  );
  // The hand-over is done when the new primary serves.
  const deadline = Date.now() + Math.max(c.timeoutMs, 15_000);
  for (;;) {
    const copy = await c
      .ask<ControlOperations, 'status'>(subjects.nodeControl(shard, to), { op: 'status' }, `${to}`)
      .catch(() => null);
    if (copy?.status === 'serving') break;
    if (Date.now() > deadline)
      throw new CliError(
        `shard ${shard}: ${answer.from} stepped down but ${to} is not serving yet (${copy?.status ?? 'no answer'})`,
        EXIT.failed,
        'handover_incomplete',
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const ms = Date.now() - started;
  return {
    data: { shard, ...answer, totalMs: ms },
    text: `shard ${shard}: ${answer.from} -> ${to} in ${ms} ms (log at stream message ${answer.streamSeq}, seq ${answer.lastSeq})`,
  };
}

async function auditVerify(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  if (args[0] !== 'verify') throw new CliError('audit verify [--shards LIST]', EXIT.usage, 'usage');
  let shards: number[];
  try {
    shards =
      typeof values.shards === 'string'
        ? parseShards(values.shards)
        : [...(await shardStreams(await c.jsm())).keys()].sort((a, b) => a - b);
  } catch (error) {
    if (error instanceof CliError) throw error;
    // Listing the streams is the admin's right: a refusal is "not allowed", not a usage error.
    if (natsFailureOf(error) === 'forbidden') throw natsFailure(error, 'audit verify');
    throw new CliError(String((error as Error).message), EXIT.usage, 'usage');
  }
  // One shard at a time: an audit process verifies on one thread, and asking all its shards at once gave
  // each an eighth of it (make bench-scale: eight shards of 1.25M auctions all past the deadline).
  const results: VerifyResult[] = [];
  for (const shard of shards)
    results.push(
      await c
        .ask<AuditAdminOperations, 'verify'>(
          adminSubjects.audit(shard),
          { op: 'verify' },
          `the audit of shard ${shard}`,
          Math.max(c.timeoutMs, 120_000),
        )
        .catch((error: CliError) => {
          if (error.exitCode === EXIT.forbidden) throw error;
          return { shard, ok: false, difference: error.message } as VerifyResult;
        }),
    );
  const bad = results.filter((r) => !r.ok);
  const text =
    results
      .map((r) =>
        r.ok
          ? `shard ${r.shard}: ok, ${r.events} events to seq ${r.lastSeq}, stream message ${r.fileStreamSeq} of ${r.streamLastSeq}, hash ${r.runningHash.slice(0, 16)}`
          : red(`shard ${r.shard}: MISMATCH: ${r.difference}`),
      )
      .join('\n') || 'no shard streams';
  return { data: { ok: bad.length === 0, shards: results }, text, exitCode: bad.length ? EXIT.failed : EXIT.ok };
}

async function userCommand(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  const [sub, idText] = args;
  if (sub !== 'disable' && sub !== 'enable') throw new CliError('user disable|enable <id>', EXIT.usage, 'usage');
  const userId = idArgument(idText, `user ${sub}`, isUserId);
  let kv;
  try {
    // Created here only on a server nobody provisioned, then as provisioning would (re-published for the gateways).
    kv = await new Kvm(jetstream(c.nc)).create(USER_FLAGS_BUCKET, bucketOptions(USER_FLAGS_BUCKET, 1));
    if (sub === 'disable')
      await kv.put(
        `u${userId}`,
        JSON.stringify({ disabledAt: Date.now(), reason: typeof values.reason === 'string' ? values.reason : '' }),
      );
    else await kv.delete(`u${userId}`);
  } catch (error) {
    throw natsFailure(error, `user ${sub}`);
  }
  return {
    data: { userId, disabled: sub === 'disable' },
    text: `user ${userId} ${sub}d${sub === 'disable' ? ': every gateway refuses their tokens and sign-ins and ends their connections' : ''}`,
  };
}

async function tokenMint(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  if (args[0] !== 'mint') throw new CliError('token mint --user <id> [--ttl-ms N]', EXIT.usage, 'usage');
  const userId = idArgument(typeof values.user === 'string' ? values.user : undefined, 'token mint --user', isUserId);
  const ttlMs = values['ttl-ms'] === undefined ? undefined : Number(values['ttl-ms']);
  if (ttlMs !== undefined && (!Number.isSafeInteger(ttlMs) || ttlMs < 1))
    throw new CliError('--ttl-ms takes a positive integer', EXIT.usage, 'usage');
  const answer = await c.ask<GatewayAdminOperations, 'mint'>(
    adminSubjects.gateway,
    { op: 'mint', userId, ttlMs },
    'a gateway',
  );
  return { data: answer, text: answer.token };
}

async function clusterInit(c: Cluster, args: string[], values: Options['values']): Promise<Output> {
  if (args[0] !== 'init') throw new CliError('cluster init --shard-count N', EXIT.usage, 'usage');
  const count = (flag: string, required = false) => {
    const text = values[flag];
    if (text === undefined && !required) return undefined;
    const n = Number(text);
    if (typeof text !== 'string' || !/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1)
      throw new CliError(`--${flag} takes a positive integer${required ? ' (required)' : ''}`, EXIT.usage, 'usage');
    return n;
  };
  const shardCount = count('shard-count', true)!;
  if (shardCount > SHARDS_MAX) throw new CliError(`--shard-count is at most ${SHARDS_MAX}`, EXIT.usage, 'usage');
  const options = {
    shardCount,
    replicas: count('stream-replicas'),
    auctionsMax: count('auctions-max'),
    idempotencyEntriesMax: count('idempotency-entries'),
  };
  let report;
  try {
    report = await provisionCluster(c.nc, options);
  } catch (error) {
    throw natsFailure(error, 'cluster init');
  }
  const state = (s: { created: boolean; upgraded: string[]; lacking: { setting: string }[] }) =>
    [
      s.created ? 'created' : 'exists',
      ...(s.upgraded.length ? [`upgraded: ${s.upgraded.join(', ')}`] : []),
      ...(s.lacking.length ? [`lacks ${s.lacking.map((l) => l.setting).join(', ')}`] : []),
    ].join('; ');
  const lacking = [
    ...report.shards.map((s) => ({ ...s, name: s.stream })),
    ...report.streams,
    ...report.buckets,
  ].filter((s) => s.lacking.length > 0);
  const text = [
    table(
      ['STREAM', 'STATE', 'MESSAGES', 'SHARD CONFIGURATION'],
      [
        ...report.shards.map((s) => [
          s.stream,
          state(s),
          String(s.lastStreamSeq),
          `auctionsMax ${s.config.auctionsMax}, idempotencyEntriesMax ${s.config.idempotencyEntriesMax}`,
        ]),
        ...report.streams.map((s) => [s.name, state(s), '-', '-']),
      ],
    ),
    '',
    table(
      ['KV BUCKET', 'STATE'],
      report.buckets.map((b) => [b.name, state(b)]),
    ),
    ...lacking.map((s) =>
      yellow(
        `${s.name} lacks ${s.lacking.map((l) => `${l.setting} (the server refused it: ${l.reason})`).join(', ')}: gateways follow it by polling, their live updates up to a second late, until it is recreated (see docs/operations.md, Provisioning)`,
      ),
    ),
  ].join('\n');
  return { data: report, text };
}

// --- main --------------------------------------------------------------------------

/** The NATS URL a credentials file may carry (make up writes its server's). */
function urlOf(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    const url = (JSON.parse(readFileSync(file, 'utf8')) as { url?: unknown }).url;
    return typeof url === 'string' ? url : undefined;
  } catch {
    return undefined;
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        nats: { type: 'string' },
        'nats-user': { type: 'string' },
        'nats-password': { type: 'string' },
        credentials: { type: 'string' },
        user: { type: 'string' },
        'timeout-ms': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        join: { type: 'string' },
        leave: { type: 'string' },
        events: { type: 'string' },
        reason: { type: 'string' },
        to: { type: 'string' },
        shards: { type: 'string' },
        'ttl-ms': { type: 'string' },
        'shard-count': { type: 'string' },
        'stream-replicas': { type: 'string' },
        'auctions-max': { type: 'string' },
        'idempotency-entries': { type: 'string' },
      },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const json = values.json === true;
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? EXIT.ok : EXIT.usage;
  }
  const fail = (error: CliError) => {
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: error.code, message: error.message } })}\n`);
    else process.stderr.write(`auctionctl: ${error.message}\n`);
    return error.exitCode;
  };
  const timeoutMs = values['timeout-ms'] === undefined ? 3_000 : Number(values['timeout-ms']);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1)
    return fail(new CliError('--timeout-ms takes a positive integer', EXIT.usage, 'usage'));
  const [command, ...args] = positionals;
  const known = [
    'status',
    'shard-of',
    'placement',
    'auction',
    'snapshot',
    'step-down',
    'audit',
    'user',
    'token',
    'cluster',
  ];
  if (!known.includes(command))
    return fail(new CliError(`unknown command ${command}; auctionctl --help lists them`, EXIT.usage, 'usage'));
  // Flags, then the environment, then the file `make up` writes.
  const env = { ...process.env };
  if (typeof values['nats-user'] === 'string') {
    env.NATS_USER = values['nats-user'];
    env.NATS_PASSWORD = values['nats-password'] ?? env.NATS_PASSWORD ?? '';
  } else if (values.credentials) {
    delete env.NATS_USER;
    env.NATS_CREDENTIALS = values.credentials;
  } else if (!env.NATS_USER && !env.NATS_CREDENTIALS && existsSync(DEFAULT_CREDENTIALS)) {
    env.NATS_CREDENTIALS = DEFAULT_CREDENTIALS;
  }
  let credentials;
  try {
    credentials = natsCredentials(env);
  } catch (error) {
    return fail(new CliError(`credentials: ${(error as Error).message}`, EXIT.usage, 'usage'));
  }
  let cluster: Cluster | null = null;
  try {
    cluster = await Cluster.connect(
      values.nats ?? process.env.NATS_URL ?? urlOf(env.NATS_CREDENTIALS) ?? 'nats://127.0.0.1:4222',
      credentials,
      timeoutMs,
    );
    const c = cluster;
    const run: Record<string, () => Promise<Output>> = {
      status: () => status(c),
      'shard-of': () => shardOf(c, args),
      placement: () => placementCommand(c, values),
      auction: () => auctionCommand(c, args, values),
      snapshot: () => snapshot(c, args),
      'step-down': () => stepDown(c, args, values),
      audit: () => auditVerify(c, args, values),
      user: () => userCommand(c, args, values),
      token: () => tokenMint(c, args, values),
      cluster: () => clusterInit(c, args, values),
    };
    const output = await run[command]();
    process.stdout.write(`${json ? JSON.stringify(output.data) : output.text}\n`);
    return output.exitCode ?? EXIT.ok;
  } catch (error) {
    return fail(error instanceof CliError ? error : natsFailure(error, command));
  } finally {
    await cluster?.close().catch(() => undefined);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`auctionctl failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = EXIT.failed;
  },
);
