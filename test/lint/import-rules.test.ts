import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// The import rules of .dependency-cruiser.cjs (issue 15) have teeth: a fixture tree that breaks each one, next
// to imports that are allowed, cruised with the repository's own config by `make lint`'s own depcruise lines.

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const config = join(repo, '.dependency-cruiser.cjs');
const depcruise = join(repo, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

// `make lint`'s depcruise lines, read from the Makefile: each one's environment and arguments after the config.
const makefile = readFileSync(join(repo, 'Makefile'), 'utf8');
const lintLines = [
  ...makefile.matchAll(/^\t((?:\w+=\S+ )*)npx depcruise --config \.dependency-cruiser\.cjs (.+)$/gm),
].map(([, env, args]) => ({
  env: Object.fromEntries(
    env
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((kv) => kv.split('=') as [string, string]),
  ),
  args: args.trim().split(/\s+/),
}));

const files: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'fixture', type: 'module', dependencies: { 'better-sqlite3': '*' } }),
  'tsconfig.json': JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      verbatimModuleSyntax: true,
      skipLibCheck: true,
    },
    include: ['.'],
  }),
  // A stand-in for the native addon, so that it resolves into node_modules as the real one does.
  'node_modules/better-sqlite3/package.json': JSON.stringify({ name: 'better-sqlite3', main: 'lib/index.js' }),
  'node_modules/better-sqlite3/lib/index.js': 'module.exports = function Database() {};\n',

  'protocol/p.ts': 'export const P = 1;\n',
  'engine/y.ts': 'export const Y = 1;\n',
  'engine/e.ts': 'export const E = 1;\n',
  'engine/core/f.ts': 'export const F = 1;\n',
  'engine/core/ok.ts':
    "import { F } from './f.js';\nimport { P } from '../../protocol/p.js';\nexport const OK = F + P;\n",
  'engine/core/a.ts': "import { B } from '../../gateway/b.js';\nexport const A = B;\n",
  'engine/core/up.ts': "import { Y } from '../y.js';\nexport const UP = Y;\n",
  'engine/core/hash.ts': "import { createHash } from 'node:crypto';\nexport const H = createHash;\n",
  'engine/core/io.ts': "import { readFileSync } from 'node:fs';\nexport const IO = readFileSync;\n",
  'launch/engine.ts': "import { Y } from '../engine/y.js';\nexport const L = Y;\n",
  'launch/ok.ts': "import { P } from '../protocol/p.js';\nexport const OK = P;\n",
  'gateway/b.ts': "import { P } from '../protocol/p.js';\nexport const B = P;\n",
  'gateway/x.ts': "import { Y } from '../engine/y.js';\nexport const X = Y;\n",
  'gateway/t.ts': "import type { Y } from '../engine/y.js';\nexport type T = typeof Y;\n",
  'gateway/core.ts': "import { F } from '../engine/core/f.js';\nexport const G = F;\n",
  'ctl/audit.ts': "import { D } from '../audit/d.js';\nexport const C = D;\n",
  // better-sqlite3 two hops away: loaded at run time by ctl/c.ts, only named as a type by gateway/types.ts.
  'shared/db.ts': "import Database from 'better-sqlite3';\nexport const open = (): unknown => Database;\n",
  'ctl/c.ts': "import { open } from '../shared/db.js';\nexport const C = open;\n",
  'gateway/types.ts': "import type { open } from '../shared/db.js';\nexport type Opener = typeof open;\n",
  'audit/d.ts': "import { E } from '../engine/e.js';\nexport const D = E;\n",
  'audit/ok.ts': "import { F } from '../engine/core/f.js';\nexport const OK = F;\n",
  'audit/g.ts': "import { B } from '../gateway/b.js';\nexport const G = B;\n",
  'audit/db.ts': "import Database from 'better-sqlite3';\nexport const DB = Database;\n",
  'replica/c1.ts': "import { C2 } from './c2.js';\nexport const C1 = (): unknown => C2;\n",
  'replica/c2.ts': "import { C1 } from './c1.js';\nexport const C2 = (): unknown => C1;\n",
  'test/cycle-a.ts': "import { B } from './cycle-b.js';\nexport const A = (): unknown => B;\n",
  'test/cycle-b.ts': "import { A } from './cycle-a.js';\nexport const B = (): unknown => A;\n",
  // test/, bench/ and testkit/ may import anything.
  'test/uses.ts': "import { Y } from '../engine/y.js';\nimport { D } from '../audit/d.js';\nexport const U = Y + D;\n",
  'bench/uses.ts':
    "import { Y } from '../engine/y.js';\nimport { open } from '../shared/db.js';\nexport const U = [Y, open];\n",
  'testkit/uses.ts':
    "import { B } from '../gateway/b.js';\nimport { E } from '../engine/e.js';\nexport const U = B + E;\n",
  'gateway/missing.ts': "import { M } from './not-there.js';\nexport const N = M;\n",
};

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

const run = async (cwd: string, env: Record<string, string>, args: string[]) => {
  const options = { cwd, env: { ...process.env, ...env }, encoding: 'utf8' as const, maxBuffer: 64 * 1024 * 1024 };
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [depcruise, '--config', config, ...args], options);
    return { stdout, status: 0 };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: unknown };
    if (typeof failed.code !== 'number') throw error;
    return { stdout: failed.stdout ?? '', status: failed.code };
  }
};

/**
 * Cruises the fixture twice at once: as the `make lint` line does (its exit code is what fails the build) and
 * as JSON, for every violation as "rule: from -> to".
 */
async function cruise(cwd: string, line: { env: Record<string, string>; args: string[] }) {
  const { env, args } = line;
  const [lint, json] = await Promise.all([run(cwd, env, args), run(cwd, env, ['--output-type', 'json', ...args])]);
  const result = JSON.parse(json.stdout) as { summary: { violations: Violation[]; error: number } };
  const violations = result.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
  return { violations, status: lint.status, errors: result.summary.error, report: lint.stdout };
}

const root = mkdtempSync(join(tmpdir(), 'import-rules-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
for (const [path, text] of Object.entries(files)) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
}

const has = (violations: string[], rule: string, from: string, to?: string) =>
  violations.some((v) => v.startsWith(`${rule}: ${from} -> ${to ?? ''}`));
const from = (violations: string[], module: string) => violations.filter((v) => v.includes(`: ${module} -> `));

t.same(
  lintLines,
  [
    { env: {}, args: ['.'] },
    { env: { DEPCRUISE_RUNTIME: '1' }, args: ['gateway', 'ctl'] },
  ],
  'make lint has the two depcruise lines',
);

t.test('the folder rules and no-circular, on the sources as written', async (t) => {
  const { violations, status, errors, report } = await cruise(root, lintLines[0]);
  t.comment(violations.join('\n'));
  t.equal(errors, 13);
  t.equal(status, errors, "make lint's depcruise line exits with its count of errors: lint fails");
  t.match(report, `${errors} dependency violations`);

  t.ok(has(violations, 'core-imports-only-core-and-protocol', 'engine/core/a.ts', 'gateway/b.ts'), 'core -> gateway');
  t.ok(has(violations, 'core-imports-only-core-and-protocol', 'engine/core/up.ts', 'engine/y.ts'), 'core -> engine');
  t.same(from(violations, 'engine/core/ok.ts'), [], 'core -> core and core -> protocol are allowed');
  t.same(from(violations, 'engine/core/hash.ts'), [], 'core -> node:crypto is allowed');
  t.ok(has(violations, 'core-imports-only-core-and-protocol', 'engine/core/io.ts', 'fs'), 'core -> node:fs');
  t.ok(
    has(violations, 'launch-starts-processes-never-imports-them', 'launch/engine.ts', 'engine/y.ts'),
    'launch -> engine',
  );
  t.same(from(violations, 'launch/ok.ts'), [], 'launch -> protocol is allowed');

  t.ok(has(violations, 'gateway-ctl-not-to-engine-audit', 'gateway/x.ts', 'engine/y.ts'), 'gateway -> engine');
  t.ok(has(violations, 'gateway-ctl-not-to-engine-audit', 'gateway/t.ts', 'engine/y.ts'), 'a type-only import too');
  t.ok(has(violations, 'gateway-ctl-not-to-engine-audit', 'gateway/core.ts', 'engine/core/f.ts'), 'even the core');
  t.ok(has(violations, 'gateway-ctl-not-to-engine-audit', 'ctl/audit.ts', 'audit/d.ts'), 'ctl -> audit');
  t.same(from(violations, 'gateway/b.ts'), [], 'gateway -> protocol is allowed');

  t.ok(has(violations, 'audit-not-to-gateway-engine', 'audit/d.ts', 'engine/e.ts'), 'audit -> engine');
  t.ok(has(violations, 'audit-not-to-gateway-engine', 'audit/g.ts', 'gateway/b.ts'), 'audit -> gateway');
  t.same(from(violations, 'audit/ok.ts'), [], 'audit -> engine/core is allowed');
  t.same(from(violations, 'audit/db.ts'), [], 'audit may use better-sqlite3');

  t.ok(has(violations, 'no-circular', 'replica/c1.ts', 'replica/c2.ts'), 'a cycle');
  t.ok(has(violations, 'no-circular', 'test/cycle-a.ts', 'test/cycle-b.ts'), 'a cycle in test/ too');
  for (const module of ['test/uses.ts', 'bench/uses.ts', 'testkit/uses.ts'])
    t.same(from(violations, module), [], `${module} is exempt from the folder rules`);

  t.ok(
    has(violations, 'not-to-unresolvable', 'gateway/missing.ts', './not-there.js'),
    'an import that resolves to nothing',
  );
  t.notOk(
    violations.some((v) => v.startsWith('gateway-ctl-never-load-better-sqlite3')),
    'the better-sqlite3 rule is not part of this pass',
  );
});

t.test('gateway and ctl never load better-sqlite3, on the runtime graph', async (t) => {
  const { violations, status, errors } = await cruise(root, lintLines[1]);
  t.comment(violations.join('\n'));
  t.equal(errors, 1);
  t.equal(status, 1, "make lint's second depcruise line fails");
  t.ok(
    has(violations, 'gateway-ctl-never-load-better-sqlite3', 'ctl/c.ts', 'node_modules/better-sqlite3/'),
    'ctl -> shared/db -> better-sqlite3, transitively',
  );
  t.same(from(violations, 'gateway/types.ts'), [], 'a type-only import loads nothing');
  t.same(from(violations, 'audit/db.ts'), [], 'audit may load it');
  t.same(
    violations.filter((v) => !v.startsWith('gateway-ctl-never-load-better-sqlite3')),
    [],
    'only that rule is checked in this pass',
  );
});
