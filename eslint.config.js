// ESLint (flat config) for the TypeScript sources: @eslint/js recommended + typescript-eslint's type-aware
// recommendedTypeChecked, run by `make lint`. Formatting is Prettier's job (.prettierrc.json): none of the
// presets below turns on a formatting rule, so eslint-config-prettier is not needed.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['dist/', 'node_modules/', '.data/', '.tap/', '.scratch/', 'bench/results/']),
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      ecmaVersion: 'latest',
      sourceType: 'module',
      globals: { ...globals.node },
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Async NATS/JetStream code: a promise nobody awaits loses its rejection, so fire-and-forget must say
      // so with `void`. Exempt: tap's `t.test(...)` (PromiseWithSubtest), which tap itself awaits and which
      // never rejects (a failure is a failed test), so the top-level `t.test` idiom is not a floating promise.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
      // `_`-prefixed names are the code base's way of saying "unused on purpose" (callback parameters of a
      // fixed signature, destructuring to drop a key).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
        },
      ],
    },
  },
  {
    // The JavaScript tool configs at the root are not in tsconfig.json: lint them without type information.
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
  },
);
