// ESLint for the TypeScript tree (`npm run lint`). A short list of rules, each for a class of
// real bug, with the type information of tsconfig.json: the promise rules catch a call whose
// promise nobody awaits (its rejection would be unhandled, its work unordered), which is where
// the transport, QMP and worker code would go wrong quietly. Style is Prettier's job, not this.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'build/', 'node_modules/', '.cache/'] },
  {
    files: ['{src,test,bench,scripts,fuzz}/**/*.ts'],
    plugins: { '@typescript-eslint': tseslint.plugin },
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Promises: each one is awaited, returned, or marked `void` where fire-and-forget is meant.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // `return p` inside try/catch/finally leaves the try before p settles: catch misses its
      // rejection and finally runs too early.
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      'no-async-promise-executor': 'error',
      'no-unsafe-finally': 'error',
      // Dead names, loose comparisons, fall-through, reassignment that never happens.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      eqeqeq: ['error', 'smart'],
      'no-fallthrough': 'error',
      'prefer-const': 'error',
      'no-self-compare': 'error',
      'no-dupe-else-if': 'error',
      'no-constant-binary-expression': 'error',
      'use-isnan': 'error',
      // Type-only imports say so (erased at build time, no import cycle at run time).
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
    },
  },
);
