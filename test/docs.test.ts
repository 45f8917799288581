import t from 'tap';
import { readFileSync } from 'node:fs';
import { BID_CHECK_ORDER, REASON_CODES } from '../protocol/index.js';

// Error codes are a documented list: this keeps the code and docs in step.
const doc = readFileSync(new URL('../../docs/engine-core.md', import.meta.url), 'utf8');

t.test('every reason code is documented', async (t) => {
  for (const code of REASON_CODES) t.match(doc, `\`${code}\``, code);
});

t.test('the documented bid check order is the code\'s', async (t) => {
  const table = doc.slice(doc.indexOf('## Reasons, in the order'), doc.indexOf('## Idempotency'));
  const documented = [...table.matchAll(/^\| \d+ \| `(\w+)` \|/gm)].map((m) => m[1]);
  t.same(documented, BID_CHECK_ORDER);
});
