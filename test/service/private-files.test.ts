import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { decode, encode, EngineClient } from '../../protocol/index.js';
import { adminSubjects } from '../../protocol/names.js';
import { AuditProcess, EngineProcess, startNats } from '../../testkit/index.js';

// Snapshots and the audit's SQLite files hold every bidder's maximum: owner-only (issue 23).

const mode = (path: string) => statSync(path).mode & 0o777;

t.test('data directories are 0700 and the files in them 0600, even where they existed with wider modes', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'private-files-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const auditDir = join(root, 'audit');
  const engineDir = join(root, 'engine');
  mkdirSync(join(engineDir, 'shard-0'), { recursive: true });
  mkdirSync(auditDir);
  for (const dir of [auditDir, engineDir, join(engineDir, 'shard-0')]) chmodSync(dir, 0o755); // as an older version left them

  const nats = await startNats();
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0', dataDir: engineDir });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0', dataDir: auditDir });
  t.teardown(() => audit.close());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());

  const engines = new EngineClient(nc);
  await engines.sendOne(0, {
    type: 'create',
    sellerId: 1,
    startingPrice: 100,
    reservePrice: 0,
    startsAt: 0,
    endsAt: Date.now() + 3_600_000,
    softCloseSeconds: 0,
  });
  const reply = decode(
    (await nc.request(adminSubjects.engine(0), encode({ op: 'snapshot' }), { timeout: 10_000 })).data,
  ) as { snapshot?: unknown };
  t.ok(reply.snapshot, 'a snapshot was written');

  t.equal(mode(join(engineDir, 'shard-0')), 0o700, 'the snapshot directory');
  const snapshots = readdirSync(join(engineDir, 'shard-0')).filter((f) => f.startsWith('snapshot-'));
  t.ok(snapshots.length > 0);
  for (const f of snapshots) t.equal(mode(join(engineDir, 'shard-0', f)), 0o600, f);

  t.equal(mode(auditDir), 0o700, 'the audit directory');
  const files = readdirSync(auditDir).filter((f) => f.startsWith('shard-0.sqlite'));
  t.ok(files.includes('shard-0.sqlite-wal'), `the WAL file is there (${files.join(', ')})`);
  for (const f of files) t.equal(mode(join(auditDir, f)), 0o600, f);
});
