// dependency-cruiser: the import rules of issue 15, checked by `make lint` (`npx depcruise --config
// .dependency-cruiser.cjs .`) and proven by test/lint/import-rules.test.ts. Paths are relative to the
// repository root. test/, bench/ and testkit/ are exempt from the folder rules (none of them is a `from` below)
// but not from no-circular.
//
// Type-only imports (`import type`) count for the folder rules: they still couple the modules. The
// better-sqlite3 rule is about what gets loaded, and dependency-cruiser's reachability follows every edge,
// so it is checked on the runtime graph: with DEPCRUISE_RUNTIME=1 (the second depcruise line of `make lint`,
// which starts from gateway/ and ctl/) the sources are cruised as compiled, where type-only imports are gone,
// and only that rule is checked.

const runtime = process.env.DEPCRUISE_RUNTIME === '1';

const folderRules = [
  {
    name: 'core-imports-only-core-and-protocol',
    comment:
      'engine/core is the pure state machine: of the project it imports only engine/core itself and protocol/; ' +
      'of the platform only what computes without I/O: node:crypto (the state hash, snapshot checksums) and ' +
      'msgpackr (the snapshot encoding). No other folder, npm package or node: module.',
    severity: 'error',
    from: { path: '^engine/core/' },
    to: { pathNot: ['^engine/core/', '^protocol/', '^crypto$', '(^|/)node_modules/msgpackr/'] },
  },
  {
    name: 'gateway-ctl-not-to-engine-audit',
    comment: 'The gateway and auctionctl talk to the engines and the audit over NATS (protocol/), never by import.',
    severity: 'error',
    from: { path: '^(gateway|ctl)/' },
    to: { path: '^(engine|audit)/' },
  },
  {
    name: 'audit-not-to-gateway-engine',
    comment: 'The audit read model imports nothing from gateway/ or engine/ except the pure core (engine/core).',
    severity: 'error',
    from: { path: '^audit/' },
    to: { path: '^(gateway|engine)/', pathNot: '^engine/core/' },
  },
  {
    name: 'launch-starts-processes-never-imports-them',
    comment:
      'launch/ starts the engine, audit and gateway as processes (make up, the tests): it imports only protocol/, ' +
      "service/ and the admin's provisioning (ctl/provision.ts), never a component's code or the test kit.",
    severity: 'error',
    from: { path: '^launch/' },
    to: { path: '^(engine|shard|replica|audit|gateway|testkit|bench|test)/' },
  },
  {
    name: 'no-circular',
    comment: 'No import cycles, type-only ones included (test/, bench/ and testkit/ too).',
    severity: 'error',
    from: {},
    to: { circular: true },
  },
  {
    // Not one of issue 15's rules, but without it the rules above have no teeth: an import that does not
    // resolve (say a `.js` specifier that maps to no `.ts` file) matches no path.
    name: 'not-to-unresolvable',
    comment: 'This module imports something that cannot be resolved to a file or a known package.',
    severity: 'error',
    from: {},
    to: { couldNotResolve: true },
  },
];

const runtimeRules = [
  {
    name: 'gateway-ctl-never-load-better-sqlite3',
    comment:
      'The gateway and auctionctl must not load better-sqlite3, directly or through any module they import ' +
      '(a native addon only the audit needs).',
    severity: 'error',
    from: { path: '^(gateway|ctl)/' },
    to: { path: '(^|/)node_modules/better-sqlite3/', reachable: true },
  },
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: runtime ? runtimeRules : folderRules,
  options: {
    doNotFollow: { path: ['node_modules'] },
    exclude: { path: '^(dist|\\.data|\\.tap|\\.scratch)/' },
    // true: cruise the TypeScript as written, type-only imports included (marked 'type-only');
    // false (the runtime pass): as tsc compiles it, with type-only imports erased.
    tsPreCompilationDeps: !runtime,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.js', '.d.ts'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    skipAnalysisNotInRules: true,
    reporterOptions: { text: { highlightFocused: true } },
  },
};
