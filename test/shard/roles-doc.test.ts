import t from 'tap';
import { readFileSync } from 'node:fs';
import { EDGES } from '../../shard/roles.js';

// The transition table of docs/replica.md lists exactly the edges shard/roles.ts allows, no more, no fewer.
t.test('docs/replica.md draws the edges the copy allows', (t) => {
  const doc = readFileSync(new URL('../../../docs/replica.md', import.meta.url), 'utf8');
  const begin = doc.indexOf('<!-- roles-table:');
  t.ok(begin >= 0, 'the doc marks where the table is');
  const rows = doc.slice(begin).split('\n').slice(1);
  const table = rows.slice(
    2,
    rows.findIndex((line, i) => i > 1 && !line.startsWith('|')),
  );
  const documented = table
    .map((line) =>
      line
        .split('|')
        .slice(1, 3)
        .map((cell) => cell.trim())
        .join(' -> '),
    )
    .sort();
  const allowed = Object.entries(EDGES)
    .flatMap(([from, tos]) => tos.map((to) => `${from} -> ${to}`))
    .sort();
  t.same(documented, allowed);
  t.end();
});
