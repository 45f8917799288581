import t from 'tap';
import { readFileSync } from 'node:fs';
import { permissionsTable } from '../../protocol/permissions.js';

// The permission table in docs/operations.md is rendered from the code's one definition: this keeps them in step.
t.test('docs/operations.md shows the permissions the servers are given', (t) => {
  const doc = readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8');
  const begin = doc.indexOf('<!-- permissions-table:');
  const end = doc.indexOf('<!-- /permissions-table -->');
  t.ok(begin >= 0 && end > begin, 'the doc marks where the table is');
  const documented = doc.slice(doc.indexOf('\n', begin) + 1, end).trim();
  t.equal(
    documented,
    permissionsTable(),
    'the table is the one permissionsTable() renders (paste its output to update the doc)',
  );
  t.end();
});
