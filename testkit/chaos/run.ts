import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Tokens } from '../../gateway/auth.js';
import { ShardLog } from '../../shard/nats-log.js';
import { decode, NOTIFICATIONS_STREAM, type NotificationBody } from '../../protocol/index.js';
import { Random } from '../simulator/random.js';
import { Waiters } from '../waiters.js';
import { AuctionBoard } from './auctions.js';
import { check, describe, expectedNotifications, type ShardEntries, type Verdict } from './checks.js';
import { ChaosClient, notificationKey } from './client.js';
import { planFaults, runFaults, type Fault, type FaultRecord } from './faults.js';
import { lostLeaders, type LostLeader } from './leaders.js';
import { ChaosSystem, type TargetKind } from './system.js';

export type ChaosOptions = {
  seed: number;
  /** Bidding and faults last this long; closing, draining and checking come after. */
  durationMs: number;
  clients: number;
  shards: number;
  /** The kinds of process faults may hit (all by default). */
  targetKinds: readonly TargetKind[];
  /** Where every process's output is written at the end. */
  logDir: string;
  /** Progress lines (faults as they happen, phases). */
  log: (line: string) => void;
};

export type ChaosReport = {
  seed: number;
  targetKinds: readonly TargetKind[];
  durationMs: number;
  planned: Fault[][];
  faults: FaultRecord[];
  verdict: Verdict;
  auditVerify: { code: number; output: string };
  /** Shards whose audit file had not caught up with the stream at the end (the run waited for it). */
  auditBehind: string[];
  /** Processes that exited by themselves (no fault killed them). */
  unexpectedExits: string[];
  /** The Raft leaders each NATS fault took away, and when the next came (from the nodes' logs). */
  lostLeaders: LostLeader[];
  bids: { sent: number; decided: number; accepted: number; attempts: number };
  auctions: number;
  clientReconnects: number;
  /** Subscriptions refused for now (`unavailable`) and asked for again, by the refusal's message (digits as N). */
  resubscribes: Map<string, number>;
  elapsedMs: number;
};

const CAPACITY = { auctionsMax: 4_096, idempotencyEntriesMax: 1 << 16 };
const SELLER_ID = 1;
const FIRST_BIDDER_ID = 1_001;
const REQUEST_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 500;
const SOFT_CLOSE_SECONDS = 2;
/** New auctions keep coming while the run lasts; each one ends before the run does. */
const NEW_AUCTION_EVERY_MS = 5_000;
const AUCTION_RUNS_MS = { min: 12_000, max: 45_000 };
const CLOSE_WAIT_MS = 60_000;
const NOTIFICATION_WAIT_MS = 30_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One chaos run (issue 17 item 3): the whole system as real processes on a
 * 3-node NATS cluster, clients bidding and watching over WebSocket while
 * faults drawn from the seed hit one or two processes at a time; then the
 * auctions close, the clients reconnect once more, and the checkers go over
 * the whole history (checks.ts). The same seed gives the same plan of faults
 * and the same client choices; timing on a real machine still differs.
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const began = Date.now();
  const random = new Random(o.seed);
  const faultRandom = random.fork();
  const boardRandom = random.fork();
  const secret = randomBytes(24).toString('base64url');
  const tokens = new Tokens(secret, 24 * 3_600_000);

  o.log(`seed ${o.seed}: starting 3 NATS nodes, 2 engines, 2 replicas, the audit and 2 gateways`);
  const system = await ChaosSystem.start({ shards: o.shards, secret, ...CAPACITY });
  try {
    const planned = planFaults(faultRandom, {
      durationMs: o.durationMs,
      targets: system.targets
        .filter((t) => o.targetKinds.includes(t.kind))
        .map((t) => ({ name: t.name, kind: t.kind })),
    });
    o.log(`${planned.flat().length} faults planned in ${planned.length} groups`);
    const board = new AuctionBoard(
      system.gateways.map((g) => g.url),
      tokens.mint(SELLER_ID).token,
      boardRandom,
    );
    const waiters = new Waiters();
    const clients = Array.from(
      { length: o.clients },
      (_, i) =>
        new ChaosClient({
          id: i,
          userId: FIRST_BIDDER_ID + i,
          token: tokens.mint(FIRST_BIDDER_ID + i).token,
          gateways: system.gateways.map((g) => g.wsUrl),
          localAddress: `127.0.0.${10 + i}`,
          random: random.fork(),
          board,
          requestTimeoutMs: REQUEST_TIMEOUT_MS,
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
          onChange: () => waiters.wake(),
        }),
    );

    const started = Date.now();
    const runEnd = started + o.durationMs;
    const auctionRuns = () => {
      const left = runEnd - Date.now() - 5_000;
      return left < AUCTION_RUNS_MS.min ? 0 : boardRandom.int(AUCTION_RUNS_MS.min, Math.min(AUCTION_RUNS_MS.max, left));
    };
    for (let i = 0; i < 6; i++)
      await board.create(i < 3 ? 0 : boardRandom.int(1_000, 8_000), auctionRuns(), SOFT_CLOSE_SECONDS);
    o.log(`${board.ids().length} auctions created; ${o.clients} clients bidding`);
    for (const c of clients) c.start();

    let stopping = false;
    const creator = (async () => {
      while (!stopping) {
        await sleep(NEW_AUCTION_EVERY_MS);
        const runs = auctionRuns();
        if (stopping || runs === 0) continue;
        await board.create(boardRandom.int(0, 4_000), runs, SOFT_CLOSE_SECONDS);
      }
    })();
    const faults = await runFaults(
      system,
      planned,
      started,
      () => Date.now() > runEnd,
      (f) =>
        o.log(
          `  +${((f.startedAt - started) / 1000).toFixed(1)} s ${describe(f)} (back after ${f.endedAt - f.startedAt} ms)`,
        ),
    );
    const left = runEnd - Date.now();
    if (left > 0) await sleep(left);
    stopping = true;
    await creator;
    o.log('bidding stops; waiting for every auction to close');
    await Promise.all(clients.map((c) => c.stopBidding()));
    const endedAt = Date.now();

    const auctions = board.ids();
    const closed = () => clients.every((c) => auctions.every((id) => c.states.get(id)?.status === 'closed'));
    await waiters
      .until(
        () => (closed() ? true : undefined),
        CLOSE_WAIT_MS,
        () => 'auctions still open',
      )
      .catch((error: Error) => o.log(`  ${error.message} after ${CLOSE_WAIT_MS} ms: the state check will say which`));
    // The watchers' view as the run left it, before the final reconnect resends every state.
    const watchers = clients.map((c, client) => ({ client, states: new Map(c.states) }));

    const shards = await readStreams(system, o.shards);
    const expected = expectedNotifications(shards);
    const missing = new Set(expected.keys());
    const forget = () => {
      for (const c of clients) for (const key of c.notifications.keys()) missing.delete(key);
    };
    o.log(`${expected.size} outbid/won notifications due; every client reconnects to collect what it missed`);
    await Promise.all(clients.map((c) => c.reconnect()));
    await waiters
      .until(
        () => {
          forget();
          return missing.size === 0 ? true : undefined;
        },
        NOTIFICATION_WAIT_MS,
        () => `${missing.size} notifications missing`,
      )
      .catch((error: Error) => o.log(`  ${error.message} after ${NOTIFICATION_WAIT_MS} ms`));
    for (const c of clients) c.close();
    // Which side lost them: the audit (never written to the stream) or the gateways (written, never delivered).
    const written = missing.size > 0 ? await notificationsWritten(system) : new Set<string>();
    const missingWritten = [...missing].filter((key) => written.has(key)).length;

    const auditVerify = await system.audit.verify(true);
    // Every shard's file against its stream's end: the audit must have caught up once the writes stopped.
    const auditBehind = auditVerify.output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { shard: number; fileStreamSeq: number; streamLastSeq: number })
      .filter((r) => r.fileStreamSeq < r.streamLastSeq)
      .map((r) => `shard ${r.shard} at stream message ${r.fileStreamSeq} of ${r.streamLastSeq}`);
    const bids = clients.flatMap((c) => c.bids);
    // The whole history beside the process logs, for whoever reads a failure.
    mkdirSync(o.logDir, { recursive: true });
    const missingDetail = [...missing].map((key) => ({ key, ...expected.get(key), written: written.has(key) }));
    writeFileSync(
      join(o.logDir, 'history.json'),
      JSON.stringify({
        seed: o.seed,
        started,
        faults,
        bids,
        missingNotifications: missingDetail,
        seen: clients.map((c) => [...c.notifications.values()]),
      }),
    );
    const verdict = check({
      shards,
      capacity: CAPACITY,
      bids,
      watchers,
      watched: auctions,
      missingNotifications: [...missing].map(
        (key) => `${key}${written.has(key) ? ' (in the stream)' : ' (not in the stream)'}`,
      ),
      missingWritten,
      faults,
      endedAt,
    });
    return {
      seed: o.seed,
      targetKinds: o.targetKinds,
      durationMs: o.durationMs,
      planned,
      faults,
      verdict,
      auditVerify,
      auditBehind,
      unexpectedExits: system.unexpectedExits.map(
        (e) => `${e.target} (${e.code ?? e.signal}) at +${((e.at - started) / 1000).toFixed(1)} s`,
      ),
      bids: {
        sent: bids.length,
        decided: bids.filter((b) => b.result).length,
        accepted: bids.filter((b) => b.result?.status === 'accepted').length,
        attempts: bids.reduce((n, b) => n + b.attempts, 0),
      },
      lostLeaders: lostLeaders(
        system.leaderChanges(),
        faults,
        system.targets.filter((t) => t.kind === 'nats').map((t) => t.name),
      ),
      auctions: auctions.length,
      clientReconnects: clients.reduce((n, c) => n + c.reconnects, 0),
      resubscribes: tally(clients.map((c) => c.resubscribes)),
      elapsedMs: Date.now() - began,
    };
  } finally {
    system.saveLogs(o.logDir);
    await system.close();
  }
}

function tally(maps: Map<string, number>[]): Map<string, number> {
  const all = new Map<string, number>();
  for (const m of maps) for (const [k, n] of m) all.set(k, (all.get(k) ?? 0) + n);
  return all;
}

/** The keys (as the clients make them) of every notification in the NOTIFICATIONS stream. */
async function notificationsWritten(system: ChaosSystem): Promise<Set<string>> {
  const nc = await connect({ servers: system.nats.servers });
  const keys = new Set<string>();
  try {
    const js = jetstream(nc);
    const last = (await (await jetstreamManager(nc)).streams.info(NOTIFICATIONS_STREAM)).state.last_seq;
    if (last === 0) return keys;
    const messages = await (await js.consumers.get(NOTIFICATIONS_STREAM)).consume({ max_messages: 512 });
    for await (const message of messages) {
      const body = decode(message.data) as NotificationBody;
      const userId = Number(message.subject.split('.')[1]);
      keys.add(notificationKey(userId, body.kind, body.auctionId, body.seq));
      if (message.seq >= last) break;
    }
    await messages.close();
    return keys;
  } finally {
    await nc.close();
  }
}

/** Every shard's stream read back from the cluster itself (not through any proxy). */
async function readStreams(system: ChaosSystem, shardCount: number): Promise<ShardEntries[]> {
  const nc = await connect({ servers: system.nats.servers });
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const shards: ShardEntries[] = [];
    for (let shard = 0; shard < shardCount; shard++) {
      const log = new ShardLog(nc, js, jsm, shard);
      const entries: ShardEntries['entries'] = [];
      for await (const { streamSeq, batch } of log.read(0, await log.lastStreamSeq()))
        entries.push({ streamSeq, batch });
      shards.push({ shard, entries });
    }
    return shards;
  } finally {
    await nc.close();
  }
}
