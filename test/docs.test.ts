import t from 'tap';
import { readFileSync } from 'node:fs';
import { BID_CHECK_ORDER, REASON_CODES } from '../protocol/index.js';
import { API_ERROR_CODES, API_ERRORS } from '../gateway/errors.js';

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

t.test('every gateway error code is documented with its HTTP status, and in the OpenAPI file', async (t) => {
  const gatewayDoc = readFileSync(new URL('../../docs/gateway.md', import.meta.url), 'utf8');
  const openapi = readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8');
  const table = [...gatewayDoc.slice(gatewayDoc.indexOf('## Error codes')).matchAll(/^\| `(\w+)` \| (\d+) \|/gm)].map((m) => [m[1], Number(m[2])]);
  t.same(table, Object.entries(API_ERRORS).map(([code, [status]]) => [code, status]));
  const enumLine = /code: \{ type: string, enum: \[([^\]]+)\] \}/.exec(openapi)?.[1].split(',').map((s) => s.trim());
  t.same(enumLine, API_ERROR_CODES);
});

t.test('the OpenAPI file lists every HTTP route of the gateway', async (t) => {
  const openapi = readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8');
  const server = readFileSync(new URL('../../gateway/server.ts', import.meta.url), 'utf8');
  const routes = new Set([...server.matchAll(/route\('(?:get|post)', '([^']+)'/g)].map((m) => m[1].replace(/:id/g, '{id}')));
  routes.add('/v1/auctions/{id}/events');
  for (const route of routes) t.match(openapi, `\n  ${route}:\n`, route);
});
