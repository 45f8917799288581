import t from 'tap';
import { ownerOf, placement } from '../../protocol/placement.js';

const engines = (n: number) => Array.from({ length: n }, (_, i) => `engine-${i}`);

t.test('every shard has exactly one owner, the same for every caller', (t) => {
  const live = engines(5);
  const byEngine = placement(1024, live);
  const all = [...byEngine.values()].flat().sort((a, b) => a - b);
  t.same(
    all,
    Array.from({ length: 1024 }, (_, i) => i),
    'each shard once',
  );
  t.same(placement(1024, [...live].reverse()), byEngine, 'order of the engine list does not matter');
  for (const [engine, shards] of byEngine)
    t.ok(shards.length > 120 && shards.length < 290, `${engine} has a fair share (${shards.length})`);
  t.end();
});

t.test('one engine alone owns every shard; no engine owns none', (t) => {
  t.same(
    placement(16, ['solo']).get('solo'),
    Array.from({ length: 16 }, (_, i) => i),
  );
  t.equal(ownerOf(3, []), null);
  t.end();
});

t.test('an engine joining takes only its share; the rest stay put', (t) => {
  const before = engines(4);
  const after = [...before, 'newcomer'];
  let moved = 0;
  for (let shard = 0; shard < 1024; shard++) {
    const was = ownerOf(shard, before);
    const now = ownerOf(shard, after);
    if (was !== now) {
      moved++;
      t.equal(now, 'newcomer', `shard ${shard} moved only to the newcomer`);
    }
  }
  t.ok(moved > 150 && moved < 260, `about a fifth moved (${moved} of 1024)`);
  t.end();
});

t.test('an engine leaving releases only its own shards', (t) => {
  const before = engines(4);
  const after = before.filter((e) => e !== 'engine-2');
  for (let shard = 0; shard < 1024; shard++) {
    const was = ownerOf(shard, before);
    if (was !== 'engine-2') t.equal(ownerOf(shard, after), was, `shard ${shard} stays with ${was}`);
  }
  t.end();
});
