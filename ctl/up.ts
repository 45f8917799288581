import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { resolve } from 'node:path';
import {
  AuditProcess,
  EngineProcess,
  freePort,
  GatewayProcess,
  handleSignals,
  NatsServer,
  ownProcessGroups,
} from '../launch/index.js';
import { ROLES, type Role } from '../protocol/names.js';
import { constants } from 'node:os';
import { Supervisor } from './supervisor.js';
import { privateDir } from '../service/private-files.js';

/**
 * `make up`: runs the local system in the foreground. It starts a nats-server
 * with JetStream (data under ./.data/nats) unless NATS_URL names one, then the
 * cluster's processes as they exist, prints what runs where, and stops
 * everything on Ctrl-C (SIGINT) or SIGTERM.
 */

const DATA_DIR = resolve(process.env.DATA_DIR ?? '.data');
/** Local clusters run this many shards on one engine (SHARD_COUNT overrides). */
const SHARD_COUNT = Number(process.env.SHARD_COUNT ?? 4);

/**
 * Every process started below is supervised: restarted with backoff when it
 * dies (RESTART_BACKOFF_MS is the first delay, 500 ms by default), stopped in
 * order on Ctrl-C. The supervisor exists before anything starts so that a
 * Ctrl-C during start-up also stops what has started.
 */
const supervisor = new Supervisor({ firstDelayMs: Number(process.env.RESTART_BACKOFF_MS ?? 500) });
/** Stop groups: the gateway stops first (no new commands), then the engines and the audit, NATS last. */
const GATEWAY = 0;
const SERVICES = 1;
const NATS = 2;

let stopSignal: NodeJS.Signals | null = null;
function stop(signal: NodeJS.Signals): void {
  if (stopSignal) {
    // A second signal while stopping: the operator does not want to wait.
    process.stdout.write(`\n${signal} again: killing every process now\n`);
    supervisor.killAll();
    process.exit(128 + constants.signals[signal]);
  }
  stopSignal = signal;
  process.stdout.write(
    `\n${signal}: stopping (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to kill everything at once)\n`,
  );
  void supervisor.stop().then(() => process.exit(0));
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

/**
 * One NATS user per role (protocol/permissions.ts has their permissions), with
 * random passwords kept in .data/auth/users.json (mode 600) across runs; the
 * admin's are also written, with this server's URL, as .data/auth/admin.json,
 * which auctionctl reads by default.
 */
function localPasswords(natsUrl: string): Record<Role, string> {
  const dir = resolve(DATA_DIR, 'auth');
  const file = resolve(dir, 'users.json');
  privateDir(dir);
  let passwords: Record<Role, string>;
  if (existsSync(file)) {
    passwords = JSON.parse(readFileSync(file, 'utf8')) as Record<Role, string>;
  } else {
    passwords = Object.fromEntries(ROLES.map((role) => [role, randomBytes(18).toString('base64url')])) as Record<
      Role,
      string
    >;
    writeFileSync(file, `${JSON.stringify(passwords, null, 2)}\n`, { mode: 0o600 });
  }
  writeFileSync(
    resolve(dir, 'admin.json'),
    `${JSON.stringify({ user: 'admin', password: passwords.admin, url: natsUrl })}\n`,
    { mode: 0o600 },
  );
  return passwords;
}

async function startLocalNats(): Promise<NatsServer> {
  const storeDir = resolve(DATA_DIR, 'nats');
  privateDir(storeDir); // the streams hold every bidder's maximum
  // Port 4222 may belong to a system NATS: ours then takes a free port. NATS_PORT
  // names one (tests use it, so they never touch 4222).
  const port = process.env.NATS_PORT
    ? Number(process.env.NATS_PORT)
    : (await portInUse(4222))
      ? await freePort()
      : 4222;
  // The users' permissions name each of the SHARD_COUNT shard streams, and services may not create
  // streams: NatsServer.start provisions every stream and bucket as the admin (ctl/provision.ts) before
  // anything else starts, as `auctionctl cluster init --shard-count N` would.
  return NatsServer.start({
    name: 'auction-local',
    port,
    storeDir,
    auth: localPasswords(`nats://127.0.0.1:${port}`),
    shards: SHARD_COUNT,
  });
}

async function main(): Promise<void> {
  // This launcher stops its processes gracefully itself, in order, so a
  // terminal's Ctrl-C must reach only this process, not every child at once.
  handleSignals(false);
  ownProcessGroups(true);
  // Owner-only from the top: credentials, streams, snapshots and SQLite files all live below.
  privateDir(DATA_DIR);
  // SIGHUP too: a closed terminal no longer reaches the children (own process groups).
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  const external = process.env.NATS_URL;
  const nats = external ? null : await startLocalNats();
  const natsUrl = external ?? nats!.url;
  // An external NATS is the operator's to secure: processes then use NATS_USER/NATS_PASSWORD as given.
  const as = (role: Role) => nats?.credentials(role) ?? {};
  // Restarted on the same port and store; the services reconnect to it by themselves.
  if (nats) supervisor.add(nats, NATS, 'SIGINT');
  const engineDir = resolve(DATA_DIR, 'engine');
  privateDir(engineDir);
  const engine = await EngineProcess.start({
    natsUrl,
    shards: `0-${SHARD_COUNT - 1}`,
    dataDir: engineDir,
    env: as('engine'),
    args: ['--engine-id', 'local-primary'],
  });
  supervisor.add(engine, SERVICES);
  const replicaDir = resolve(DATA_DIR, 'replica');
  privateDir(replicaDir);
  const replica = await EngineProcess.start({
    natsUrl,
    shards: `0-${SHARD_COUNT - 1}`,
    dataDir: replicaDir,
    role: 'replica',
    env: as('engine'),
    args: ['--engine-id', 'local-replica'],
  });
  supervisor.add(replica, SERVICES);
  const auditDir = resolve(DATA_DIR, 'audit');
  privateDir(auditDir);
  const audit = await AuditProcess.start({
    natsUrl,
    shards: `0-${SHARD_COUNT - 1}`,
    dataDir: auditDir,
    env: as('audit'),
  });
  supervisor.add(audit, SERVICES);
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  // The token secret: GATEWAY_SECRET when set, else a random one kept in .data/gateway-secret.
  const gateway = await GatewayProcess.start({
    natsUrl,
    port,
    host,
    env: as('gateway'),
    args: ['--secret-file', resolve(DATA_DIR, 'gateway-secret')],
  });
  supervisor.add(gateway, GATEWAY);
  const api = `http://${host}:${port}`;

  const lines = [
    'auction engine: local system is up',
    `  nats (JetStream)  ${natsUrl}${nats ? `  (pid ${nats.pid}, data ${nats.storeDir}, monitor http://127.0.0.1:${nats.monitorPort})` : '  (external, from NATS_URL)'}`,
    ...(nats
      ? [
          `                    users admin, engine, audit, gateway (passwords in ${resolve(DATA_DIR, 'auth')}/users.json; see docs/operations.md)`,
        ]
      : []),
    `  engine            shards 0-${SHARD_COUNT - 1}  (pid ${engine.pid}, snapshots ${engineDir})`,
    `                    commands: NATS request auction.cmd.<shard>, msgpack {commands:[...]}; log: stream AUCTION_LOG_<shard>`,
    `  replica           shards 0-${SHARD_COUNT - 1}  (pid ${replica.pid}, hot standby; takes over when a primary's lease expires)`,
    `  audit             shards 0-${SHARD_COUNT - 1}  (pid ${audit.pid}, SQLite files ${auditDir}/shard-<n>.sqlite; queries: NATS request auction.audit.<shard>)`,

    `  gateway           ${api}  (pid ${gateway.pid}; WebSocket ws://${host}:${port}/v1/ws; metrics ${api}/metrics)`,
    '',
    'Try it (copy and paste):',
    `  curl -s -XPOST ${api}/v1/users -H 'content-type: application/json' -d '{"username":"alice","password":"secret-pw"}'`,
    `  TOKEN=$(curl -s -XPOST ${api}/v1/sessions -H 'content-type: application/json' -d '{"username":"alice","password":"secret-pw"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).token')`,
    `  curl -s -XPOST ${api}/v1/auctions -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"title":"Brass lamp","startingPrice":1000,"endsAt":'$(( $(date +%s) * 1000 + 600000 ))'}'`,
    `  curl -N ${api}/v1/auctions/<id>/events        # live prices (SSE), in another terminal`,
    `  node -e 'const ws = new (require("ws"))("ws://${host}:${port}/v1/ws"); ws.on("open", () => ws.send(JSON.stringify({type: "subscribe", auctionIds: [<id>]}))); ws.on("message", (m) => console.log(String(m)))'`,
    `  curl -s -XPOST ${api}/v1/auctions/<id>/bids -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"maxBid":2500,"bidId":1}'`,
    '    (a seller cannot bid on their own auction: register a second user to bid)',
    '',
    'Operate it (admin credentials from .data/auth/admin.json):',
    `  npx auctionctl${external ? ` --nats ${natsUrl}` : ''} status        # also: auction show <id>, step-down <shard>, audit verify, token mint --user <id>, --help`,
    'Press Ctrl-C to stop.',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch(async (error: unknown) => {
  // A start interrupted by Ctrl-C fails as its processes are stopped: that is the stop, not a failure.
  if (supervisor.isStopping) return;
  process.stderr.write(`make up failed: ${error instanceof Error ? error.message : String(error)}\n`);
  // What did start is stopped in order rather than left to the SIGKILL at exit.
  await supervisor.stop();
  process.exit(1);
});
