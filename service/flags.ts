import { parseArgs } from 'node:util';
import { ConfigError } from '../protocol/config-error.js';

/**
 * A process's options: flag name -> [environment variable (null: none),
 * default]. Flags win over the environment. The engine, the gateway and the
 * audit each define one (their config.ts), and test/docs.test.ts checks the
 * flag tables of docs/ against them.
 */
export type FlagTable = Readonly<Record<string, readonly [string | null, string]>>;

/** One line per flag for a usage text: `--flag  env VARIABLE  default value`. */
export function flagUsage(table: FlagTable): string {
  const flagWidth = Math.max(...Object.keys(table).map((flag) => flag.length));
  const envWidth = Math.max(...Object.values(table).map(([env]) => (env ?? '').length));
  return Object.entries(table)
    .map(([flag, [env, fallback]]) => {
      const variable = env ? `env ${env.padEnd(envWidth)}` : ''.padEnd(envWidth + 4);
      return `  --${flag.padEnd(flagWidth)}  ${variable}  default ${fallback}`;
    })
    .join('\n');
}

/**
 * Reads a table's flags from `argv`: `get(flag)` is the flag's value, else
 * its environment variable's, else `defaults[flag]`, else its default.
 * `booleans` are flags without a value; `positionals` allows arguments
 * that are not flags. An unknown or malformed flag throws parseArgs's error.
 */
export function readFlags<T extends FlagTable>(
  table: T,
  argv: string[],
  env: NodeJS.ProcessEnv,
  options: { defaults?: Partial<Record<keyof T, string>>; booleans?: string[]; positionals?: boolean } = {},
): { get: (flag: keyof T & string) => string; isSet: (boolean: string) => boolean; positionals: string[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: options.positionals ?? false,
    options: {
      ...Object.fromEntries(Object.keys(table).map((flag) => [flag, { type: 'string' as const }])),
      ...Object.fromEntries((options.booleans ?? []).map((flag) => [flag, { type: 'boolean' as const }])),
    },
  });
  const given = values as Record<string, string | boolean | undefined>;
  const get = (flag: keyof T & string): string => {
    const [variable, fallback] = table[flag];
    const value = given[flag];
    return (
      (typeof value === 'string' ? value : undefined) ??
      (variable ? env[variable] : undefined) ??
      options.defaults?.[flag] ??
      fallback
    );
  };
  return { get, isSet: (boolean) => given[boolean] === true, positionals };
}

/** A flag's value that must be a positive integer. */
export function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new ConfigError(`--${flag} must be a positive integer, got ${text}`);
  return value;
}
