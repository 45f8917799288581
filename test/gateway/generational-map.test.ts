import t from 'tap';
import fc from 'fast-check';
import { GenerationalMap } from '../../gateway/generational-map.js';
import { MissCache } from '../../gateway/miss-cache.js';

t.test('never more than entriesMax entries; the newest entriesMax / 2 are always kept', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 64 }),
      fc.array(fc.tuple(fc.constantFrom('set', 'delete'), fc.integer({ min: 0, max: 200 })), { maxLength: 500 }),
      (entriesMax, ops) => {
        const map = new GenerationalMap<number, number>(entriesMax);
        const recent: number[] = []; // keys set, newest last, without the deleted ones
        for (const [op, key] of ops) {
          const at = recent.indexOf(key);
          if (at >= 0) recent.splice(at, 1);
          if (op === 'set') {
            map.set(key, key * 10);
            recent.push(key);
          } else {
            map.delete(key);
            if (map.get(key) !== undefined) return false;
          }
          if (map.size > entriesMax) return false;
          for (const k of recent.slice(-Math.floor(entriesMax / 2))) if (map.get(k) !== k * 10) return false;
        }
        return true;
      },
    ),
  );
  t.end();
});

t.test('a value that is undefined-like is still found in the newer generation only', (t) => {
  const map = new GenerationalMap<string, number>(4);
  map.set('a', 0);
  t.equal(map.get('a'), 0, 'zero is a value');
  map.set('b', 1);
  map.set('a', 2); // moves to the newer generation
  t.equal(map.get('a'), 2);
  t.throws(() => new GenerationalMap(1), RangeError);
  t.end();
});

t.test('a miss cache that has seen a million creations still forgets and remembers as it should', (t) => {
  let now = 0;
  const cache = new MissCache<number>(1_000, 100_000, () => now);
  for (let id = 1; id <= 1_000_000; id++) cache.forget(id); // every creation on the stream forgets its id
  cache.add(2_000_000, now);
  t.ok(cache.has(2_000_000), 'a fresh miss is remembered');
  cache.add(999_999, now - 1);
  t.notOk(cache.has(999_999), 'a look-up that started before a recent creation records no miss');
  now += 1_000;
  t.notOk(cache.has(2_000_000), 'and a miss lasts its TTL');
  t.end();
});
