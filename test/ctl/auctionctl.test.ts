import t from 'tap';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { WebSocket } from 'ws';
import { decode, encode, EngineClient, streamName, subjects, type CreateOutcome } from '../../protocol/index.js';
import { placement } from '../../protocol/placement.js';
import { loadConfig } from '../../engine/config.js';
import type { Role } from '../../protocol/names.js';
import type { AuctionState } from '../../protocol/commands.js';
import type { Auction } from '../../protocol/public.js';
import type { AuctionEvent, SnapshotReply, StepDownReply, VerifyResult } from '../../protocol/operations.js';
import type { ClusterView } from '../../ctl/cluster-view.js';
import type { ProvisionReport } from '../../ctl/provision.js';
import {
  AuditProcess,
  BidLoad,
  EngineProcess,
  eventually,
  GatewayProcess,
  replayShard,
  startNats,
  type NatsServer,
} from '../../testkit/index.js';
import { httpClient } from '../gateway/fixture.js';

const CLI = new URL('../../ctl/auctionctl.js', import.meta.url).pathname;
const LEASE = ['--lease-ttl-ms', '1000', '--lease-renew-ms', '200'];
const SECRET = 'ctl-test-secret-0123456789';

/** A CLI run; `json` is its --json document, read as the command's output type `T` (null when stdout is not JSON). */
type Run<T = unknown> = { code: number; stdout: string; stderr: string; json: T };

/** What the commands print with --json (ctl/auctionctl.ts); a failure prints `CliFailure` instead. */
type CliFailure = { error: { code: string; message: string } };
type StatusJson = ClusterView;
type StepDownJson = { shard: number; totalMs: number } & StepDownReply;
type SnapshotJson = { shard: number } & SnapshotReply;
type AuctionShowJson = {
  auctionId: number;
  shard: number;
  live: AuctionState | null;
  details: Auction | null;
  events: AuctionEvent[];
};
type AuditVerifyJson = { ok: boolean; shards: VerifyResult[] };
type PlacementMove = { shard: number; from: string | null; to: string | null };
type PlacementJson = {
  mode: 'static' | 'placement';
  shardCount: number | null;
  shards: { shard: number; primary: string | null; replicas: string[] }[];
  /** Placement mode only. */
  live: string[];
  byHashing: Record<string, number[]>;
  ifJoined: { engine: string; moves: PlacementMove[] };
  ifLeft: Record<string, PlacementMove[]>;
};

/** Runs the real CLI as a process, as an operator would, with the credentials of `role`. */
function cli<T = unknown>(
  nats: Pick<NatsServer, 'url' | 'credentials'>,
  role: Role | null,
  ...args: string[]
): Promise<Run<T>> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.NATS_USER;
  delete env.NATS_PASSWORD;
  delete env.NATS_CREDENTIALS;
  if (role) Object.assign(env, nats.credentials(role));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, '--nats', nats.url, ...args],
      { env, timeout: 60_000, cwd: tmpdir() },
      (error, stdout, stderr) => {
        let json: unknown = null;
        try {
          json = JSON.parse(stdout);
        } catch {
          // Not a --json run.
        }
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr, json: json as T });
      },
    );
  });
}

/** A secured cluster like `make up`'s: a primary and a replica of shards 0-1, the audit, a gateway. */
async function cluster(t: { teardown: (fn: () => unknown) => void }) {
  const nats = await startNats({ auth: true, shards: 2 }); // provisioned for shards 0-1
  t.teardown(() => nats.close());
  const engineEnv = nats.credentials('engine');
  const primary = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0-1',
    env: engineEnv,
    args: ['--engine-id', 'p', ...LEASE],
  });
  t.teardown(() => primary.close());
  const replica = await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0-1',
    role: 'replica',
    env: engineEnv,
    args: ['--engine-id', 'r', ...LEASE],
  });
  t.teardown(() => replica.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0-1', env: nats.credentials('audit') });
  t.teardown(() => audit.close());
  const gateway = await GatewayProcess.start({ natsUrl: nats.url, secret: SECRET, env: nats.credentials('gateway') });
  t.teardown(() => gateway.close());
  const nc = await connect(nats.connectOptions('admin'));
  t.teardown(() => nc.close());
  const client = new EngineClient(nc, 3_000);
  const create = async (shard: number) =>
    (
      (await client.sendOne(shard, {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        endsAt: Date.now() + 3_600_000,
      })) as CreateOutcome
    ).auctionId;
  return { nats, primary, replica, audit, gateway, nc, client, create };
}

const stateHash = async (nc: NatsConnection, shard: number) =>
  (
    decode((await nc.request(subjects.control(shard), encode({ op: 'hash' }), { timeout: 3_000 })).data) as {
      stateHash: string;
    }
  ).stateHash;

t.test('status tells the truth: a healthy cluster, then a killed replica', async (t) => {
  const c = await cluster(t);
  const healthy = await eventually(
    async () => {
      const run = await cli<StatusJson>(c.nats, 'admin', 'status', '--json');
      if (run.code !== 0) throw new Error(run.stdout + run.stderr);
      return run;
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
  t.equal(healthy.json.healthy, true, 'healthy');
  t.same(
    healthy.json.engines.map((e) => [e.id, e.role]),
    [
      ['p', 'primary'],
      ['r', 'replica'],
    ],
    'both engines answer, with their roles',
  );
  t.equal(healthy.json.gateways.length, 1, 'the gateway answers');
  t.same(healthy.json.audits[0].shards, [0, 1], 'the audit follows both shards');
  for (const shard of healthy.json.shards) {
    t.match(
      shard,
      {
        primary: { engineId: 'p' },
        lease: { holder: 'p' },
        replicas: [{ engineId: 'r', status: 'following' }],
        audit: { behindMessages: Number },
        problems: [],
      },
      `shard ${shard.shard}: primary p, lease p, replica r, audited`,
    );
  }
  const text = await cli(c.nats, 'admin', 'status');
  t.match(text.stdout, /healthy/, 'the table says healthy');
  t.match(text.stdout, /SHARD\s+LOG\s+EVENTS\s+PRIMARY/, 'and shows the shard table');

  await c.replica.kill();
  const degraded = await cli<StatusJson>(c.nats, 'admin', 'status', '--json');
  t.equal(degraded.code, 1, 'exit 1: something is wrong');
  t.same(
    degraded.json.engines.map((e) => e.id),
    ['p'],
    'the killed replica no longer answers',
  );
  t.ok(
    degraded.json.problems.includes('shard 0: no replica follows it: losing its primary would stop it'),
    'shard 0 is named as having no replica',
  );
  t.ok(
    degraded.json.problems.includes('shard 1: no replica follows it: losing its primary would stop it'),
    'so is shard 1',
  );
  const table = await cli(c.nats, 'admin', 'status');
  t.equal(table.code, 1);
  t.match(table.stdout, /2 problem\(s\)/, 'the table counts the problems');
  t.match(table.stdout, /! shard 0: no replica follows it/, 'and lists them');
});

t.test(
  'step-down under load hands the shard to the replica: nothing acknowledged lost, nothing accepted twice',
  async (t) => {
    const c = await cluster(t);
    const auctions = [await c.create(0), await c.create(0), await c.create(0)];
    const load = new BidLoad(c.nc, 0, auctions);
    load.start(4);
    await load.untilAnswered(300);
    const moved = await cli<StepDownJson>(c.nats, 'admin', 'step-down', '0', '--json');
    t.equal(moved.code, 0, moved.stderr);
    t.match(moved.json, { shard: 0, from: 'p', to: 'r' }, 'p handed shard 0 to r, its only replica');
    await load.untilAnswered(300);
    // And back, naming the target.
    const back = await cli<StepDownJson>(c.nats, 'admin', 'step-down', '0', '--to', 'p', '--json');
    t.match(back.json, { from: 'r', to: 'p' }, 'and r handed it back to p');
    await load.untilAnswered(300);
    await load.stop();
    t.comment(`outages seen by clients during the hand-overs (ms): ${load.outagesMs.join(', ') || 'none'}`);

    const { core, acceptedBids, writers } = await replayShard(c.nc, 0);
    const missing = load.acked.filter((b) => !acceptedBids.get(`${b.bidderId}/${b.bidId}`)?.includes(b.seq));
    t.equal(missing.length, 0, `all ${load.acked.length} acknowledged bids are in the stream`);
    t.same(load.acceptedTwice(), [], 'no bid id was answered accepted with two sequence numbers');
    t.same(
      [...acceptedBids].filter(([, seqs]) => seqs.length > 1),
      [],
      'no bid id was accepted twice in the stream',
    );
    t.ok(writers.length >= 3, `the log was written by p, then r, then p (${writers.length} writers in turn)`);
    const status = await cli<StatusJson>(c.nats, 'admin', 'status', '--json');
    t.match(
      status.json.shards[0],
      { primary: { engineId: 'p' }, replicas: [{ engineId: 'r', status: 'following' }] },
      'p serves shard 0 again and r follows',
    );
    t.equal(await stateHash(c.nc, 0), core.stateHash(), 'the serving primary equals a replay of the stream');

    const none = await cli(c.nats, 'admin', 'step-down', '1', '--to', 'nobody');
    t.equal(none.code, 1, 'a hand-over to an engine that does not follow the shard is refused');
    t.match(none.stderr, /nobody is not a replica following shard 1/);
  },
);

t.test('close and cancel reach the audit store; auction show, snapshot and audit verify', async (t) => {
  const c = await cluster(t);
  const [toClose, toCancel] = [await c.create(0), await c.create(1)];
  t.match(await c.client.bid(toClose, 7, 1, 500), { status: 'accepted' });
  t.match(await c.client.bid(toCancel, 7, 2, 500), { status: 'accepted' });

  const closed = await cli(c.nats, 'admin', 'auction', 'close', String(toClose), '--json');
  t.equal(closed.code, 0, closed.stderr);
  t.match(
    closed.json,
    { auctionId: toClose, audited: true, result: { status: 'accepted', winnerId: 7, price: 100 } },
    'closed with bidder 7 winning, and the audit has it',
  );
  const cancelled = await cli(c.nats, 'admin', 'auction', 'cancel', String(toCancel), '--reason', 'counterfeit goods');
  t.equal(cancelled.code, 0, cancelled.stderr);
  t.match(cancelled.stdout, /cancelled at seq \d+: cancelled: counterfeit goods; recorded by the audit/);

  const audited = async (auctionId: number, shard: number) =>
    (
      decode(
        (await c.nc.request(`auction.audit.${shard}`, encode({ op: 'auction', auctionId }), { timeout: 3_000 })).data,
      ) as { auction: Record<string, unknown> }
    ).auction;
  t.match(
    await audited(toClose, 0),
    { status: 'closed', winnerId: 7, price: 100 },
    'the audit store shows the close and its winner',
  );
  t.match(await audited(toCancel, 1), { status: 'cancelled' }, 'the audit store shows the cancellation');

  const show = await cli<AuctionShowJson>(c.nats, 'admin', 'auction', 'show', String(toCancel), '--json');
  t.equal(show.code, 0);
  t.match(show.json, { live: { status: 'cancelled', bidCount: 1 }, details: { status: 'cancelled' } });
  t.match(
    show.json.events,
    [
      { type: 'cancel', status: 'accepted', detail: 'counterfeit goods' },
      { type: 'bid', bidderId: 7, maxBid: 500, status: 'accepted' },
      { type: 'create' },
    ],
    'recent events newest first, with the reason and the maximum (operators only)',
  );
  const showText = await cli(c.nats, 'admin', 'auction', 'show', String(toClose));
  t.match(showText.stdout, /status closed\s+price 1\.00\s+leader 7/);

  const again = await cli<CliFailure>(c.nats, 'admin', 'auction', 'close', String(toClose), '--json');
  t.equal(again.code, 1, 'closing a closed auction fails');
  t.match(again.json, { error: { code: 'auction_closed' } });
  const unknown = await cli(c.nats, 'admin', 'auction', 'show', String(999 * 1024));
  t.equal(unknown.code, 1, 'an unknown auction: exit 1');
  t.match(unknown.stderr, /not found/);
  t.equal(
    (await cli(c.nats, 'admin', 'auction', 'cancel', String(toClose))).code,
    2,
    'cancel without --reason is a usage error',
  );

  const snap = await cli<SnapshotJson>(c.nats, 'admin', 'snapshot', '0', '--json');
  t.equal(snap.code, 0, snap.stderr);
  t.match(snap.json, { shard: 0, engineId: 'p', snapshot: { lastSeq: Number } });
  t.ok(snap.json.snapshot.lastSeq >= 3, 'the snapshot holds the close');
  t.ok(
    Number.isInteger(snap.json.stallMs) && snap.json.stallMs >= 0,
    `the answer says how long the shard decided nothing for it (${snap.json.stallMs} of ${snap.json.ms} ms)`,
  );
  const status = await cli<StatusJson>(c.nats, 'admin', 'status', '--json');
  t.ok(status.json.shards[0].snapshot!.ageMs < 60_000, 'status shows the fresh snapshot');

  const shardOf = await cli(c.nats, 'admin', 'shard-of', String(toCancel), '--json');
  t.match(shardOf.json, { auctionId: toCancel, shard: 1, stream: 'AUCTION_LOG_1', primary: 'p', replicas: ['r'] });
  const where = await cli(c.nats, 'admin', 'placement', '--json');
  t.match(where.json, {
    mode: 'static',
    shards: [
      { shard: 0, primary: 'p', replicas: ['r'] },
      { shard: 1, primary: 'p', replicas: ['r'] },
    ],
  });

  const verify = await cli<AuditVerifyJson>(c.nats, 'admin', 'audit', 'verify', '--json');
  t.equal(verify.code, 0, verify.stdout);
  t.match(
    verify.json,
    {
      ok: true,
      shards: [
        { shard: 0, ok: true },
        { shard: 1, ok: true },
      ],
    },
    'both audit files match their streams',
  );
});

t.test('without admin rights, operator commands are refused and change nothing', async (t) => {
  const c = await cluster(t);
  const auctionId = await c.create(0);
  const before = await stateHash(c.nc, 0);
  for (const args of [
    ['auction', 'close', String(auctionId)],
    ['auction', 'cancel', String(auctionId), '--reason', 'x'],
    ['step-down', '0'],
    ['snapshot', '0'],
    ['token', 'mint', '--user', '5'],
    ['user', 'disable', '5'],
    ['audit', 'verify'],
  ]) {
    const run = await cli<CliFailure>(c.nats, 'gateway', ...args, '--json');
    t.equal(run.code, 4, `${args.join(' ')} with the gateway's credentials: exit 4`);
    t.match(run.json, { error: { code: 'forbidden' } });
  }
  // The command subject the gateways use does not take operator actions either.
  const asGateway = await connect(c.nats.connectOptions('gateway'));
  t.teardown(() => asGateway.close());
  const result = await new EngineClient(asGateway).sendOne(0, { type: 'close', auctionId });
  t.match(result, { status: 'error', code: 'forbidden' }, 'close on auction.cmd.* is refused by the engine');
  t.equal(await stateHash(c.nc, 0), before, 'nothing changed in the engine');
  t.match(
    await c.client.sendOne(0, { type: 'cancel', auctionId }),
    { status: 'error', code: 'forbidden' },
    'even from the admin user, the command subject refuses it',
  );

  const wrong = await cli<CliFailure>(
    c.nats,
    null,
    'status',
    '--nats-user',
    'admin',
    '--nats-password',
    'wrong',
    '--json',
  );
  t.equal(wrong.code, 4, 'a wrong password: exit 4');
  t.match(wrong.json.error.message, /Authorization Violation/);
  const unreachable = await cli({ url: 'nats://127.0.0.1:1', credentials: () => ({}) }, null, 'status');
  t.equal(unreachable.code, 3, 'no NATS there: exit 3');
  t.match(unreachable.stderr, /cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
  t.equal((await cli(c.nats, 'admin', 'frobnicate')).code, 2, 'an unknown command: exit 2');
});

t.test('token mint and user disable act on the gateways', async (t) => {
  const c = await cluster(t);
  const http = httpClient(c.gateway.url);
  const auctionId = await c.create(0);
  const minted = await cli(c.nats, 'admin', 'token', 'mint', '--user', '42');
  t.equal(minted.code, 0, minted.stderr);
  const token = minted.stdout.trim();
  t.match(token, /^v1\./, 'the bare token, for TOKEN=$(auctionctl token mint ...)');
  t.match(
    await http('POST', `/v1/auctions/${auctionId}/bids`, { maxBid: 300, bidId: 1 }, token),
    { status: 200, body: { status: 'accepted' } },
    'the minted token bids as user 42',
  );

  const socket = new WebSocket(`${c.gateway.wsUrl}?token=${token}`);
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const closedSocket = new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));
  const disabled = await cli(c.nats, 'admin', 'user', 'disable', '42', '--reason', 'shill bidding');
  t.equal(disabled.code, 0, disabled.stderr);
  t.equal(await closedSocket, 1008, "the user's open connection is ended");
  const refused = await eventually(
    async () => {
      const r = await http('POST', `/v1/auctions/${auctionId}/bids`, { maxBid: 400, bidId: 2 }, token);
      if (r.status !== 403) throw new Error(JSON.stringify(r));
      return r;
    },
    { timeoutMs: 5_000, intervalMs: 20 },
  );
  t.match(refused.body, { error: { code: 'user_disabled' } }, 'their token is refused');
  // A gateway started after the disable knows it from the start.
  const late = await GatewayProcess.start({ natsUrl: c.nats.url, secret: SECRET, env: c.nats.credentials('gateway') });
  t.teardown(() => late.close());
  t.match(
    await httpClient(late.url)('POST', `/v1/auctions/${auctionId}/bids`, { maxBid: 400, bidId: 3 }, token),
    { status: 403, body: { error: { code: 'user_disabled' } } },
    'a gateway started later refuses it too',
  );

  t.equal((await cli(c.nats, 'admin', 'user', 'enable', '42')).code, 0);
  await eventually(
    async () => {
      const r = await http('POST', `/v1/auctions/${auctionId}/bids`, { maxBid: 400, bidId: 4 }, token);
      if (r.status !== 200) throw new Error(JSON.stringify(r));
    },
    { timeoutMs: 5_000, intervalMs: 20 },
  );
  t.pass('enabled again, the same token bids');
  t.equal((await cli(c.nats, 'admin', 'token', 'mint', '--user', '0')).code, 2, 'user 0 is a usage error');
});

t.test('cluster init provisions what a secured cluster lacks; services name it when it is missing', async (t) => {
  const nats = await startNats({ auth: true, shards: 2 });
  t.teardown(() => nats.close());
  const nc = await connect(nats.connectOptions('admin'));
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(streamName(1));
  // Under its own NATS user an engine may not create the stream: it says which one, and how to create it.
  const refused = await EngineProcess.start({ natsUrl: nats.url, shards: '0-1', env: nats.credentials('engine') }).then(
    () => null,
    (error: Error) => error.message,
  );
  t.match(
    refused,
    /stream AUCTION_LOG_1 does not exist, and this NATS user may not create it: .*auctionctl cluster init --shard-count N/,
    'the engine fails naming the stream and the provisioning command',
  );
  t.equal(
    (await cli(nats, 'gateway', 'cluster', 'init', '--shard-count', '2', '--json')).code,
    4,
    'only the admin may provision',
  );
  const init = await cli<ProvisionReport>(nats, 'admin', 'cluster', 'init', '--shard-count', '2', '--json');
  t.equal(init.code, 0, init.stderr);
  t.match(
    init.json.shards,
    [
      { shard: 0, stream: 'AUCTION_LOG_0', created: false },
      { shard: 1, stream: 'AUCTION_LOG_1', created: true },
    ],
    'the missing shard log is created, the other kept',
  );
  const defaults = loadConfig([], {});
  t.same(
    init.json.shards.map((s) => s.config),
    [0, 1].map((shard) => ({
      shard,
      auctionsMax: defaults.auctionsMax,
      idempotencyEntriesMax: defaults.idempotencyEntriesMax,
    })),
    "each records the engine's default shard configuration, as an engine creating it would",
  );
  t.ok(
    [...init.json.streams, ...init.json.buckets].every((x) => !x.created),
    'the notifications stream and every bucket existed already',
  );
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0-1', env: nats.credentials('engine') });
  t.teardown(() => engine.close());
  t.match(
    await new EngineClient(nc, 3_000).sendOne(1, {
      type: 'create',
      sellerId: 1,
      startingPrice: 100,
      endsAt: Date.now() + 3_600_000,
    }),
    { status: 'accepted' },
    'the engine then serves the provisioned shard',
  );
  t.equal((await cli(nats, 'admin', 'cluster', 'init', '--json')).code, 2, 'without --shard-count: a usage error');
});

t.test('placement shows where shards would move when an engine joins or leaves', async (t) => {
  const nats = await startNats();
  t.teardown(() => nats.close());
  const engines = await Promise.all(
    ['alpha', 'beta'].map((id) =>
      EngineProcess.start({
        natsUrl: nats.url,
        shards: '',
        args: ['--shard-count', '8', '--engine-id', id, '--heartbeat-ms', '100', '--engine-expiry-ms', '500', ...LEASE],
      }),
    ),
  );
  for (const e of engines) t.teardown(() => e.close());
  const expected = placement(8, ['alpha', 'beta']);
  const view = await eventually(
    async () => {
      const run = await cli<PlacementJson | null>(nats, null, 'placement', '--json', '--join', 'gamma');
      const serving = run.json?.shards?.filter((s) => s.primary).length;
      if (serving !== 8) throw new Error(`${serving} of 8 shards served`);
      return run.json!;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  t.equal(view.mode, 'placement');
  t.same(view.live, ['alpha', 'beta']);
  t.same(view.byHashing, Object.fromEntries(expected), 'the hashing placement of the live engines');
  for (const s of view.shards)
    t.equal(
      s.primary,
      expected.get('alpha')!.includes(s.shard) ? 'alpha' : 'beta',
      `shard ${s.shard} is served where hashing puts it`,
    );
  t.same(
    view.ifLeft.alpha,
    expected.get('alpha')!.map((shard) => ({ shard, from: 'alpha', to: 'beta' })),
    'if alpha left, exactly its shards would move, to beta',
  );
  const withGamma = placement(8, ['alpha', 'beta', 'gamma']);
  t.same(
    view.ifJoined.moves.map((m) => m.shard),
    withGamma.get('gamma'),
    'if gamma joined, it would take exactly the shards it scores highest on',
  );
  t.ok(
    view.ifJoined.moves.every((m) => m.to === 'gamma'),
    'and nothing else moves',
  );
});
