import t from 'tap';
import type { FaultRecord } from '../../testkit/chaos/faults.js';
import { describeLost, leaderChanges, lostLeaders } from '../../testkit/chaos/leaders.js';

/**
 * The chaos report measures what bounds a NATS node's loss from the nodes'
 * own logs: nats-server 2.9 writes a line when a node becomes the leader of
 * a stream or of the meta group, in local time. These are such lines, as
 * the server wrote them in a run (`make chaos SEED=105`).
 */
const line = (time: string, text: string) => `[6788] 2026/12/02 ${time} [INF] ${text}`;
const at = (time: string) => {
  const [h, m, s] = time.split(':');
  return new Date(2026, 11, 2, +h, +m, Math.floor(+s), Math.round((+s % 1) * 1000)).getTime();
};
const streamLeader = (stream: string) => `JetStream cluster new stream leader for '$G > ${stream}'`;

const node0 = [
  line('06:09:02.100335', 'Self is new JetStream cluster metadata leader'),
  line('06:09:16.101266', streamLeader('KV_auction_leases')),
  line('06:09:17.222341', streamLeader('AUCTION_LOG_2')),
  line('06:09:17.300000', "JetStream cluster new consumer leader for '$G > AUCTION_LOG_2 > RUnEyjzrkuoWQpupjSx1hN_1'"),
  'a line of some other shape',
].join('\n');
const node1 = [
  line('06:09:10.000000', streamLeader('AUCTION_LOG_1')),
  line('06:09:26.722341', streamLeader('AUCTION_LOG_2')),
  line('06:09:30.500000', 'Self is new JetStream cluster metadata leader'),
].join('\n');

const fault = (f: Partial<FaultRecord>): FaultRecord =>
  ({ at: 0, targetKind: 'nats', durationMs: 1_000, group: 0, ...f }) as FaultRecord;

t.test('the leaderships each node took are read from its log, in local time', (t) => {
  const changes = leaderChanges('nats-0', node0);
  t.same(changes, [
    { at: at('06:09:02.100'), node: 'nats-0', stream: 'meta' },
    { at: at('06:09:16.101'), node: 'nats-0', stream: 'KV_auction_leases' },
    { at: at('06:09:17.222'), node: 'nats-0', stream: 'AUCTION_LOG_2' },
  ]);
  t.end();
});

t.test('a killed leader: every group it led, and when the next leader came', (t) => {
  const changes = [...leaderChanges('nats-0', node0), ...leaderChanges('nats-1', node1)];
  const killedAt = at('06:09:20.000');
  const lost = lostLeaders(
    changes,
    [fault({ target: 'nats-0', kind: 'kill', startedAt: killedAt, endedAt: killedAt + 1_000, group: 3 })],
    ['nats-0', 'nats-1', 'nats-2'],
  );
  t.same(lost, [
    { group: 3, node: 'nats-0', stream: 'meta', afterMs: 10_500, elected: true },
    { group: 3, node: 'nats-0', stream: 'KV_auction_leases', afterMs: null, elected: false },
    { group: 3, node: 'nats-0', stream: 'AUCTION_LOG_2', afterMs: 6_722, elected: true },
  ]);
  t.equal(describeLost(lost), 'meta elected 10.5 s, KV_auction_leases never, AUCTION_LOG_2 elected 6.7 s');
  t.end();
});

t.test('a paused leader that no one replaced went on leading; other faults and nodes lose nothing', (t) => {
  const changes = [...leaderChanges('nats-0', node0), ...leaderChanges('nats-1', node1)];
  const from = at('06:09:20.000');
  const lost = lostLeaders(
    changes,
    [
      fault({ target: 'nats-0', kind: 'pause', startedAt: from, endedAt: from + 2_470 }),
      fault({ target: 'nats-0', kind: 'kill', startedAt: at('06:08:00.000'), endedAt: at('06:08:01.000') }),
      fault({ target: 'nats-2', kind: 'kill', startedAt: from, endedAt: from + 1_000 }),
      fault({ target: 'engine-a', targetKind: 'engine', kind: 'kill', startedAt: from, endedAt: from + 1_000 }),
    ],
    ['nats-0', 'nats-1', 'nats-2'],
  );
  t.same(
    lost.map((l) => [l.stream, l.afterMs, l.elected]),
    [
      ['meta', 2_470, false],
      ['KV_auction_leases', 2_470, false],
      ['AUCTION_LOG_2', 2_470, false],
    ],
  );
  t.end();
});
