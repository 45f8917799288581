import { mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { resolve } from 'node:path';
import { NatsServer } from '../testkit/nats-server.js';
import { EngineProcess } from '../testkit/engine-process.js';
import { AuditProcess } from '../testkit/audit-process.js';
import { freePort } from '../testkit/ports.js';
import { handleSignals } from '../testkit/managed-process.js';

/**
 * `make up`: runs the local system in the foreground. It starts a nats-server
 * with JetStream (data under ./.data/nats) unless NATS_URL names one, then the
 * cluster's processes as they exist, prints what runs where, and stops
 * everything on Ctrl-C (SIGINT) or SIGTERM.
 */

const DATA_DIR = resolve(process.env.DATA_DIR ?? '.data');
/** Local clusters run this many shards on one engine (SHARD_COUNT overrides). */
const SHARD_COUNT = Number(process.env.SHARD_COUNT ?? 4);

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

async function startLocalNats(): Promise<NatsServer> {
  const storeDir = resolve(DATA_DIR, 'nats');
  mkdirSync(storeDir, { recursive: true });
  // Port 4222 may belong to a system NATS: ours then takes a free port.
  const port = (await portInUse(4222)) ? await freePort() : 4222;
  return NatsServer.start({ name: 'auction-local', port, storeDir });
}

async function main(): Promise<void> {
  // This launcher stops its processes gracefully itself (below).
  handleSignals(false);
  const external = process.env.NATS_URL;
  const nats = external ? null : await startLocalNats();
  const natsUrl = external ?? nats!.url;
  const engineDir = resolve(DATA_DIR, 'engine');
  mkdirSync(engineDir, { recursive: true });
  const engine = await EngineProcess.start({ natsUrl, shards: `0-${SHARD_COUNT - 1}`, dataDir: engineDir, args: ['--engine-id', 'local-primary'] });
  const replicaDir = resolve(DATA_DIR, 'replica');
  mkdirSync(replicaDir, { recursive: true });
  const replica = await EngineProcess.start({ natsUrl, shards: `0-${SHARD_COUNT - 1}`, dataDir: replicaDir, role: 'replica', args: ['--engine-id', 'local-replica'] });
  const auditDir = resolve(DATA_DIR, 'audit');
  mkdirSync(auditDir, { recursive: true });
  const audit = await AuditProcess.start({ natsUrl, shards: `0-${SHARD_COUNT - 1}`, dataDir: auditDir });

  const lines = [
    'auction engine: local system is up',
    `  nats (JetStream)  ${natsUrl}${nats ? `  (pid ${nats.pid}, data ${nats.storeDir}, monitor http://127.0.0.1:${nats.monitorPort})` : '  (external, from NATS_URL)'}`,
    `  engine            shards 0-${SHARD_COUNT - 1}  (pid ${engine.pid}, snapshots ${engineDir})`,
    `                    commands: NATS request auction.cmd.<shard>, msgpack {commands:[...]}; log: stream AUCTION_LOG_<shard>`,
    `  replica           shards 0-${SHARD_COUNT - 1}  (pid ${replica.pid}, hot standby; takes over when a primary's lease expires)`,
    `  audit             shards 0-${SHARD_COUNT - 1}  (pid ${audit.pid}, SQLite files ${auditDir}/shard-<n>.sqlite; queries: NATS request auction.audit.<shard>)`,
    `                    verify: node dist/audit/main.js verify --nats ${natsUrl} --shards 0-${SHARD_COUNT - 1} --data-dir ${auditDir}`,
    '  gateway: not part of the system yet (see the open issues)',
    'Press Ctrl-C to stop.',
  ];
  process.stdout.write(lines.join('\n') + '\n');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping\n`);
    await Promise.all([engine.signal('SIGTERM'), replica.signal('SIGTERM'), audit.signal('SIGTERM')]);
    if (nats) await nats.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`make up failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
