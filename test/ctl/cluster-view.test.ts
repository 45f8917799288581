import t from 'tap';
import { clusterView } from '../../ctl/cluster-view.js';
import type { ProcessStatus } from '../../protocol/cluster.js';

t.test('a process that counted unhandled promise rejections is a problem of the cluster', (t) => {
  const gateway = (unhandledRejections?: number): ProcessStatus => ({
    kind: 'gateway',
    id: 'g1',
    pid: 1,
    startedAt: 0,
    listen: '127.0.0.1:1',
    connections: 0,
    subscriptions: 0,
    ...(unhandledRejections === undefined ? {} : { unhandledRejections }),
  });
  const audit: ProcessStatus = { kind: 'audit', id: 'a1', pid: 2, startedAt: 0, shards: [], unhandledRejections: 0 };
  const engine: ProcessStatus = {
    kind: 'engine',
    id: 'e1',
    role: 'primary',
    pid: 3,
    startedAt: 0,
    shards: [],
    shardCount: null,
    unhandledRejections: 3,
  };
  const view = clusterView([gateway(2), audit, engine], new Map(), new Map());
  t.ok(view.problems.includes('gateway g1: 2 unhandled promise rejections (bugs: see its log)'));
  t.ok(view.problems.includes('engine e1: 3 unhandled promise rejections (bugs: see its log)'));
  t.notOk(
    view.problems.some((p) => p.startsWith('audit a1')),
    'none counted: no problem',
  );
  t.notOk(
    clusterView([gateway(), audit, { ...engine, unhandledRejections: 0 }], new Map(), new Map()).problems.some((p) =>
      /unhandled/.test(p),
    ),
    'older processes without the field are fine',
  );
  t.end();
});
