import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { firstDifference } from '../../audit/table-diff.js';

/** A connection with `main` (the stream's side) and a file attached as `file`, each holding table t (k, a, b). */
function pair(t: Test, fileRows: unknown[][], streamRows: unknown[][]) {
  const dir = mkdtempSync(join(tmpdir(), 'table-diff-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Database(':memory:');
  t.teardown(() => db.close());
  db.prepare('ATTACH DATABASE ? AS file').run(join(dir, 'file.sqlite'));
  for (const [schema, rows] of [
    ['file', fileRows],
    ['main', streamRows],
  ] as const) {
    db.exec(`CREATE TABLE ${schema}.t (k INTEGER PRIMARY KEY, a TEXT, b REAL)`);
    const insert = db.prepare(`INSERT INTO ${schema}.t (k, a, b) VALUES (?, ?, ?)`);
    for (const row of rows) insert.run(...row);
  }
  return () => firstDifference(db, 't', 'k', 'file', 'main');
}

const rows = [
  [1, 'x', 1],
  [2, null, 2.5],
  [3, 'z', null],
];

t.test('equal tables: no difference (NULL equals NULL, 1 equals 1.0)', (t) => {
  t.equal(
    pair(
      t,
      rows,
      rows.map(([k, a, b]) => [k, a, b === 1 ? 1.0 : b]),
    )(),
    null,
  );
  t.end();
});

t.test('a column that differs names the row, the column and both values', (t) => {
  t.equal(pair(t, [rows[0], [2, 'y', 2.5], rows[2]], rows)(), 't k 2: a is "y" in the file, null from the stream');
  t.equal(pair(t, [rows[0], rows[1], [3, 'z', 7]], rows)(), 't k 3: b is 7 in the file, null from the stream');
  t.end();
});

t.test('a row missing from the file, and one the stream never had', (t) => {
  t.equal(pair(t, [rows[0], rows[2]], rows)(), 't k 2: missing from the file');
  t.equal(pair(t, [...rows, [9, 'w', 1]], rows)(), 't k 9: in the file but not in the stream');
  t.equal(pair(t, [], rows)(), 't k 1: missing from the file');
  t.equal(pair(t, rows, [])(), 't k 1: in the file but not in the stream');
  t.end();
});

t.test('of several differences, the lowest key is named', (t) => {
  t.equal(
    pair(
      t,
      [
        [1, 'x', 1],
        [3, 'changed', null],
        [4, 'extra', 0],
      ],
      rows,
    )(),
    't k 2: missing from the file',
  );
  t.equal(
    pair(
      t,
      [
        [1, 'x', 9],
        [4, 'extra', 0],
      ],
      rows,
    )(),
    't k 1: b is 9 in the file, 1 from the stream',
  );
  t.equal(pair(t, [[0, 'extra', 0], ...rows.slice(1)], rows)(), 't k 0: in the file but not in the stream');
  t.end();
});
