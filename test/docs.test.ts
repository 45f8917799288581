import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { BID_CHECK_ORDER, REASON_CODES } from '../protocol/index.js';
import { API_ERROR_CODES, API_ERRORS } from '../gateway/errors.js';
import { HTTP_ROUTES } from '../gateway/http/routes.js';
import { OPTIONS as ENGINE_OPTIONS } from '../engine/config.js';
import { OPTIONS as GATEWAY_OPTIONS } from '../gateway/config.js';
import { OPTIONS as AUDIT_OPTIONS } from '../audit/config.js';

const readDoc = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');

// Error codes are a documented list: this keeps the code and docs in step.
const doc = readFileSync(new URL('../../docs/engine-core.md', import.meta.url), 'utf8');

t.test('every reason code is documented', (t) => {
  for (const code of REASON_CODES) t.match(doc, `\`${code}\``, code);
  t.end();
});

t.test("the documented bid check order is the code's", (t) => {
  const table = doc.slice(doc.indexOf('## Reasons, in the order'), doc.indexOf('## Idempotency'));
  const documented = [...table.matchAll(/^\| \d+ \| `(\w+)` \|/gm)].map((m) => m[1]);
  t.same(documented, BID_CHECK_ORDER);
  t.end();
});

t.test('every gateway error code is documented with its HTTP status, and in the OpenAPI file', (t) => {
  const gatewayDoc = readFileSync(new URL('../../docs/gateway.md', import.meta.url), 'utf8');
  const openapi = readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8');
  const table = [...gatewayDoc.slice(gatewayDoc.indexOf('## Error codes')).matchAll(/^\| `(\w+)` \| (\d+) \|/gm)].map(
    (m) => [m[1], Number(m[2])],
  );
  t.same(
    table,
    Object.entries(API_ERRORS).map(([code, [status]]) => [code, status]),
  );
  const enumLine = /code: \{ type: string, enum: \[([^\]]+)\] \}/
    .exec(openapi)?.[1]
    .split(',')
    .map((s) => s.trim());
  t.same(enumLine, API_ERROR_CODES);
  t.end();
});

t.test('the OpenAPI file lists every HTTP route of the gateway', (t) => {
  const openapi = readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8');
  const routes = new Set(HTTP_ROUTES.map((route) => route.path.replace(/:id/g, '{id}')));
  for (const route of routes) t.match(openapi, `\n  ${route}:\n`, route);
  t.end();
});

// --- flag tables -------------------------------------------------------------------------------------

/** A process's option definitions: flag -> [environment variable or null, default]. */
type OptionTable = Readonly<Record<string, readonly [string | null, string]>>;
type DocumentedFlag = { env: string | null; fallback: string | undefined };

/**
 * The rows of a doc's flag tables (`| flag | env | default | meaning |`):
 * each row names one or more flags, their variables in the same order, and
 * their defaults separated by `, ` or ` / `, one per flag.
 */
function documentedFlags(markdown: string): Map<string, DocumentedFlag> {
  const flags = new Map<string, DocumentedFlag>();
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('| `--')) continue;
    const [names, envs, defaults] = line
      .split('|')
      .slice(1, 4)
      .map((cell) => cell.trim());
    const rowFlags = [...names.matchAll(/`--([a-z0-9-]+)`/g)].map((m) => m[1]);
    const rowEnvs = [...envs.matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]);
    const rowDefaults = defaults.split(/,\s+|\s+\/\s+/);
    rowFlags.forEach((flag, i) => {
      flags.set(flag, {
        env: envs === '–' ? null : (rowEnvs[i] ?? null),
        fallback: rowDefaults.length === rowFlags.length ? rowDefaults[i] : undefined,
      });
    });
  }
  return flags;
}

/** A documented default as the code writes it: `1,048,576` is 1048576, `–` is none; prose (`<host>-<hash>`) is not compared. */
function comparableDefault(documented: string | undefined): string | undefined {
  if (documented === undefined) return undefined;
  const text = documented.replace(/`/g, '');
  if (text === '–') return '';
  if (/^\d{1,3}(,\d{3})+$/.test(text)) return text.replace(/,/g, '');
  return /^[\w.:/-]+$/.test(text) ? text : undefined;
}

function checkFlagTables(t: Test, docs: string[], options: OptionTable): void {
  const documented = new Map<string, DocumentedFlag>();
  for (const name of docs) for (const [flag, row] of documentedFlags(readDoc(name))) documented.set(flag, row);
  t.same(
    [...documented.keys()].sort(),
    Object.keys(options).sort(),
    `${docs.join(' + ')} document exactly the flags the process defines`,
  );
  for (const [flag, [env, fallback]] of Object.entries(options)) {
    const row = documented.get(flag);
    if (!row) continue;
    t.equal(row.env, env, `--${flag}: its environment variable`);
    const expected = comparableDefault(row.fallback);
    if (expected !== undefined) t.equal(expected, fallback, `--${flag}: its default`);
  }
}

t.test("the flag tables in docs are the processes' option definitions", (t) => {
  t.test('engine and replica', (t) => {
    checkFlagTables(t, ['engine.md', 'replica.md'], ENGINE_OPTIONS);
    t.end();
  });
  t.test('gateway', (t) => {
    checkFlagTables(t, ['gateway.md'], GATEWAY_OPTIONS);
    t.end();
  });
  t.test('audit', (t) => {
    checkFlagTables(t, ['audit.md'], AUDIT_OPTIONS);
    t.end();
  });
  t.end();
});
